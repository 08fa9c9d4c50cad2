#!/usr/bin/env python3
# seal_relay.py - test tools for sealed jobs (test_sealed.sh).
#
#   seal_relay.py relay LISTEN_PORT TARGET_PORT RECORD MODE_FILE
#       A TCP forwarder between `troop up` and a worker that appends every
#       byte it forwards, both ways, to RECORD (what anything on the path
#       would see).  Before each sealed reply (Content-Type
#       application/x-troop-sealed) it reads MODE_FILE: "none", or
#       "flip K" / "drop K" / "swap K" / "cut K" to flip a byte in the K-th
#       chunk of the chunked body, drop that chunk, swap it with the next,
#       or end the body cleanly (the last-chunk marker) before it.  The
#       mode is used once, then the file is reset to "none".  Requests:
#       "reqflip 0" flips a byte of the next sealed request body; "replay 0"
#       sends the previous sealed request's body under the next ticket;
#       "nooffer 0" takes the reply suite offer ("; reply=...") out of the
#       next X-Troop-Seal header, as an older client sends it; "nogcm2 0"
#       takes only a256gcm2 out of it (a downgrade on the path).
#   seal_relay.py authz LISTEN_PORT COORD_PORT STATEMENT_FILE
#       An HTTP proxy in front of the coordinator that puts another node's
#       statement (STATEMENT_FILE: lines "NODE_ID STATEMENT") into every
#       /authorize reply's seal_key: a coordinator that substitutes a key.
#   Prints "listening on PORT" once bound.
import json
import os
import socket
import sys
import threading


MODE_LOCK = threading.Lock()


def read_mode(path, kinds):
    """The mode in PATH if it is one of KINDS (then reset to none)."""
    with MODE_LOCK:
        try:
            with open(path) as f:
                words = f.read().split()
        except OSError:
            return ("none", 0)
        if len(words) == 2 and words[0] in kinds:
            with open(path, "w") as f:
                f.write("none\n")
            return (words[0], int(words[1]))
        return ("none", 0)


LAST_SEALED = {}   # the last sealed request seen: header line, body


def pump_requests(src, dst, rec, mode_file):
    """troop up -> worker: HTTP requests; "reqflip 0" flips a byte of the
    next sealed body, "replay 0" sends the previous sealed request's
    X-Troop-Seal header and body under this request's ticket."""
    buf = b""
    try:
        while True:
            buf, ok = recv_until(src, buf, b"\r\n\r\n")
            if not ok:
                break
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            length = 0
            seal = None
            for h in lines:
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":", 1)[1])
                if h.lower().startswith(b"x-troop-seal:"):
                    seal = h
            while len(buf) < length:
                d = src.recv(65536)
                if not d:
                    raise OSError("closed")
                buf += d
            body, buf = buf[:length], buf[length:]
            if seal is not None:
                mode, _ = read_mode(mode_file, ("reqflip", "replay", "nooffer", "nogcm2"))
                prev = LAST_SEALED.get("req")
                LAST_SEALED["req"] = (seal, body)
                if mode == "reqflip":
                    body = body[:-1] + bytes([body[-1] ^ 1])
                elif mode == "nooffer":
                    plain = b";".join(p for p in seal.split(b";")
                                      if not p.strip().startswith(b"reply="))
                    lines = [plain if h.lower().startswith(b"x-troop-seal:") else h
                             for h in lines]
                elif mode == "nogcm2":
                    down = seal.replace(b"a256gcm2,", b"").replace(b",a256gcm2", b"")
                    down = down.replace(b"reply=a256gcm2", b"reply=a256gcm")
                    lines = [down if h.lower().startswith(b"x-troop-seal:") else h
                             for h in lines]
                elif mode == "replay" and prev:
                    seal, body = prev
                    lines = [seal if h.lower().startswith(b"x-troop-seal:") else h
                             for h in lines if not h.lower().startswith(b"content-length:")]
                    lines.append(b"Content-Length: %d" % len(body))
            out = b"\r\n".join(lines) + b"\r\n\r\n" + body
            rec.write(out)
            dst.sendall(out)
    except (OSError, ValueError):
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Recorder:
    def __init__(self, path):
        self.f = open(path, "ab", buffering=0)
        self.lock = threading.Lock()

    def write(self, data):
        with self.lock:
            self.f.write(data)


def recv_until(sock, buf, marker):
    while marker not in buf:
        d = sock.recv(65536)
        if not d:
            return buf, False
        buf += d
    return buf, True


def pump_replies(src, dst, rec, mode_file):
    """Worker -> troop up: HTTP replies, tampered with per MODE_FILE."""
    buf = b""
    try:
        while True:
            buf, ok = recv_until(src, buf, b"\r\n\r\n")
            if not ok:
                if buf:
                    rec.write(buf)
                    dst.sendall(buf)
                break
            head, buf = buf.split(b"\r\n\r\n", 1)
            head += b"\r\n\r\n"
            rec.write(head)
            dst.sendall(head)
            lower = head.lower()
            sealed = b"application/x-troop-sealed" in lower
            mode, k = read_mode(mode_file, ("flip", "drop", "swap", "cut")) \
                if sealed else ("none", 0)
            if b"transfer-encoding: chunked" in lower:
                n = 0
                held = None
                cut = False
                while True:
                    buf, ok = recv_until(src, buf, b"\r\n")
                    if not ok:
                        raise OSError("closed")
                    line, buf = buf.split(b"\r\n", 1)
                    size = int(line.split(b";")[0], 16)
                    while len(buf) < size + 2:
                        d = src.recv(65536)
                        if not d:
                            raise OSError("closed")
                        buf += d
                    data, buf = buf[:size], buf[size + 2:]
                    if size == 0:
                        out = b"" if cut else b"0\r\n\r\n"
                        if held is not None:
                            out = held + out
                        rec.write(out)
                        dst.sendall(out)
                        break
                    n += 1
                    chunk = b"%x\r\n" % len(data) + data + b"\r\n"
                    if cut:
                        continue
                    if mode == "flip" and n == k:
                        data = data[:-1] + bytes([data[-1] ^ 1])
                        chunk = b"%x\r\n" % len(data) + data + b"\r\n"
                    elif mode == "drop" and n == k:
                        continue
                    elif mode == "swap" and n == k:
                        held = chunk
                        continue
                    elif mode == "cut" and n == k:
                        cut = True
                        out = b"0\r\n\r\n"
                        rec.write(out)
                        dst.sendall(out)
                        continue
                    rec.write(chunk)
                    dst.sendall(chunk)
                    if held is not None and chunk is not held:
                        rec.write(held)
                        dst.sendall(held)
                        held = None
            else:
                length = 0
                for h in lower.split(b"\r\n"):
                    if h.startswith(b"content-length:"):
                        length = int(h.split(b":", 1)[1])
                while len(buf) < length:
                    d = src.recv(65536)
                    if not d:
                        raise OSError("closed")
                    buf += d
                body, buf = buf[:length], buf[length:]
                rec.write(body)
                dst.sendall(body)
    except (OSError, ValueError):
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(port, handle):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    print("listening on %d" % ls.getsockname()[1], flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def relay(listen, target, record, mode_file):
    rec = Recorder(record)

    def handle(c):
        try:
            u = socket.create_connection(("127.0.0.1", target))
        except OSError:
            c.close()
            return
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump_requests, args=(c, u, rec, mode_file),
                         daemon=True).start()
        pump_replies(u, c, rec, mode_file)

    serve(listen, handle)


def authz(listen, coord, stmt_file):
    """One request per connection: read it whole, forward, rewrite."""
    def handle(c):
        try:
            buf, ok = recv_until(c, b"", b"\r\n\r\n")
            head, body = buf.split(b"\r\n\r\n", 1)
            length = 0
            lines = head.split(b"\r\n")
            for h in lines:
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":", 1)[1])
            while len(body) < length:
                body += c.recv(65536)
            # one request per connection upstream too
            lines = [h for h in lines if not h.lower().startswith(b"connection:")]
            req = b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body
            u = socket.create_connection(("127.0.0.1", coord))
            u.sendall(req)
            reply = b""
            while True:
                d = u.recv(65536)
                if not d:
                    break
                reply += d
            u.close()
            rhead, rbody = reply.split(b"\r\n\r\n", 1)
            rlines = rhead.split(b"\r\n")
            if b"chunked" in rhead.lower():
                plain, rest = b"", rbody
                while True:
                    line, rest = rest.split(b"\r\n", 1)
                    n = int(line.split(b";")[0], 16)
                    if n == 0:
                        break
                    plain += rest[:n]
                    rest = rest[n + 2:]
                rbody = plain
            if lines[0].startswith(b"POST /authorize "):
                try:
                    o = json.loads(rbody)
                    if "seal_key" in o:
                        with open(stmt_file) as f:
                            for line in f:
                                node, stmt = line.split()
                                if node != o["node_id"]:
                                    o["seal_key"] = stmt
                    rbody = json.dumps(o).encode()
                except ValueError:
                    pass
            rlines = [h for h in rlines if not h.lower().startswith(
                (b"content-length:", b"transfer-encoding:", b"connection:"))]
            out = b"\r\n".join(rlines) + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(rbody) + rbody
            c.sendall(out)
        except (OSError, ValueError):
            pass
        c.close()

    serve(listen, handle)


if __name__ == "__main__":
    if sys.argv[1] == "relay":
        relay(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "authz":
        authz(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("usage: seal_relay.py relay|authz ...")
