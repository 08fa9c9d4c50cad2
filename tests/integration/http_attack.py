# http_attack.py - raw-socket attacks on a troop HTTP server, for the shell
# tests test_http_strict.sh and test_slowloris.sh.  Each subcommand prints
# one "ok: ..." line per check and "FAIL: ..." on a failure (exit status 1).
#   strict HOST PORT         smuggling shapes: each must get its status at once
#   stall HOST PORT N SECS   hold N connections from 127.0.0.1, each sending
#                            a partial request head, for SECS seconds; prints
#                            how many the server kept open
#   trickle HOST PORT        one byte a second: when does the server close?
import json, socket, sys, time

def raw(host, port, data, timeout=5.0, src=None):
    """Send data, read to EOF or timeout; return (status, body, seconds)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    t0 = time.monotonic()
    s.connect((host, port))
    s.sendall(data)
    buf = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            buf += b
            if b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(rest) >= int(cl[0].split(b":")[1]):
                    break
    except socket.timeout:
        pass
    dt = time.monotonic() - t0
    s.close()
    if not buf.startswith(b"HTTP/1."):
        return 0, buf, dt
    status = int(buf.split(b" ", 2)[1])
    return status, buf.partition(b"\r\n\r\n")[2], dt

FAILS = 0

def check(name, got, want, body, dt, within=2.0):
    global FAILS
    if got != want:
        print("FAIL: %s: status %d, want %d (%r)" % (name, got, want, body[:200]))
        FAILS += 1
        return
    if dt > within:
        print("FAIL: %s: %d after %.1f s, want within %.1f s" % (name, got, dt, within))
        FAILS += 1
        return
    try:
        e = json.loads(body)["error"]
        assert e["message"] and e["type"] and e["code"]
    except Exception:
        print("FAIL: %s: %d without the JSON error shape: %r" % (name, got, body[:200]))
        FAILS += 1
        return
    print("ok: %s -> %d in %.3f s" % (name, got, dt))

def strict(host, port):
    h = b"Host: 127.0.0.1\r\n"
    post = b"POST /v1/chat/completions HTTP/1.1\r\n" + h
    cases = [
        ("two different Content-Length", post +
         b"Content-Length: 5\r\nContent-Length: 40\r\n\r\nhelloGET /health HTTP/1.1\r\n\r\n", 400),
        ("Transfer-Encoding: chunked, identity", post +
         b"Transfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n\r\nhello", 400),
        ("Transfer-Encoding: identity", post +
         b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", 400),
        ("Transfer-Encoding and Content-Length", post +
         b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
        ("NUL byte in a header", b"GET /health HTTP/1.1\r\n" + h + b"X-A: a\x00b\r\n\r\n", 400),
        ("folded header line", b"GET /health HTTP/1.1\r\n" + h + b"X-A: a\r\n b\r\n\r\n", 400),
        ("bad chunk size", post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
        ("chunk size with 0x", post + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
        ("GET with a body", b"GET /health HTTP/1.1\r\n" + h +
         b"Content-Length: 27\r\n\r\nGET /health HTTP/1.1\r\n\r\n\r\n", 400),
        ("two Host headers", b"GET /health HTTP/1.1\r\n" + h + b"Host: evil.example\r\n\r\n", 400),
        ("HTTP/0.1 request line", b"GET /health HTTP/0.1\r\n" + h + b"\r\n", 400),
        ("space in the target", b"GET /health x HTTP/1.1\r\n" + h + b"\r\n", 400),
        ("CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + h + b"\r\n", 405),
    ]
    for name, data, want in cases:
        st, body, dt = raw(host, port, data, timeout=15)
        check(name, st, want, body, dt, within=1.0)
    # the well-formed requests still work, chunked included
    st, body, dt = raw(host, port, b"GET /health HTTP/1.1\r\n" + h + b"Connection: close\r\n\r\n")
    if st != 200:
        print("FAIL: plain GET /health: %d" % st); return 1
    print("ok: plain GET /health -> 200")
    return 1 if FAILS else 0

def stall(host, port, n, secs):
    socks, refused = [], 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(True)
        try:
            s.connect((host, port))
            s.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            refused += 1
            s.close()
    time.sleep(0.5)
    open_ = 0
    for s in socks:
        s.setblocking(False)
        try:
            b = s.recv(1)
            if b == b"":
                continue
        except BlockingIOError:
            open_ += 1
            continue
        except OSError:
            continue
    print("held %d of %d connections open (%d refused at connect)" % (open_, n, refused))
    sys.stdout.flush()
    time.sleep(secs)
    return 0

def trickle(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect((host, port))
    data = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    t0 = time.monotonic()
    for ch in data:
        try:
            s.send(bytes([ch]))
        except OSError:
            break
        s.settimeout(1.0)
        try:
            s.recv(4096)        # EOF or the 408: the server gave up on us
            break
        except socket.timeout:
            pass
        except OSError:
            break
    print("closed after %.1f s" % (time.monotonic() - t0))
    return 0

if __name__ == "__main__":
    cmd = sys.argv[1]
    host, port = sys.argv[2], int(sys.argv[3])
    if cmd == "strict":
        sys.exit(strict(host, port))
    if cmd == "stall":
        sys.exit(stall(host, port, int(sys.argv[4]), float(sys.argv[5])))
    if cmd == "trickle":
        sys.exit(trickle(host, port))
    sys.exit(2)
