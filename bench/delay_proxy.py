#!/usr/bin/env python3
"""delay_proxy.py - a TCP forwarder that behaves like a long link, for
bench_wan.sh on machines without tc netem.

  delay_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

Every byte takes DELAY_MS to cross in each direction (data sent together
stays together; order is kept), and a new connection costs one round trip
(2 x DELAY_MS) before its first byte goes on, as a TCP handshake over such
a link would.  Prints "listening on 127.0.0.1:PORT" when ready.
"""
import asyncio
import sys


async def pump(reader, writer, delay):
    queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data if data else None))
            if not data:
                break
    except OSError:
        queue.put_nowait((loop.time(), None))
    await sender


async def handle(creader, cwriter, host, port, delay):
    await asyncio.sleep(2 * delay)          # the handshake's round trip
    try:
        ureader, uwriter = await asyncio.open_connection(host, port)
    except OSError:
        cwriter.close()
        return
    try:
        await asyncio.gather(pump(creader, uwriter, delay), pump(ureader, cwriter, delay))
    except OSError:
        pass
    finally:
        uwriter.close()
        cwriter.close()


async def main():
    listen, host, port, delay = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), \
        float(sys.argv[4]) / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, host, port, delay), "127.0.0.1", listen)
    bound = server.sockets[0].getsockname()[1]
    print("listening on 127.0.0.1:%d" % bound, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
