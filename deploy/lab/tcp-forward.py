#!/usr/bin/env python3
"""Forward TCP connections from LISTEN_HOST:LISTEN_PORT to TARGET_HOST:TARGET_PORT.

Used by sim-host.sh so that processes in a simulated host's network namespace
reach services that listen on 127.0.0.1 only in the root namespace (on these
machines RabbitMQ is configured with ``listeners.tcp.local = 127.0.0.1:5672``,
and RabbitMQ's ``guest`` user may only log in over loopback anyway: through
the forwarder the broker sees a 127.0.0.1 peer). Stdlib only, one process per
forwarded port; connections are only accepted from ALLOWED (a CIDR, by default
the 10.77.0.0/16 lab range) so that the listener is no back door.

Usage: tcp-forward.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT [ALLOWED_CIDR]
"""
import asyncio
import ipaddress
import signal
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass


async def main(listen_host, listen_port, target_host, target_port, allowed):
    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")
        if not peer or ipaddress.ip_address(peer[0]) not in allowed:
            writer.close()
            return
        try:
            t_reader, t_writer = await asyncio.wait_for(
                asyncio.open_connection(target_host, target_port), 10)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(pipe(reader, t_writer), pipe(t_reader, writer))
        for w in (writer, t_writer):
            w.close()

    server = await asyncio.start_server(handle, listen_host, listen_port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("tcp-forward: %s:%d -> %s:%d (peers in %s)" % (
        listen_host, listen_port, target_host, target_port, allowed), flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    cidr = ipaddress.ip_network(sys.argv[5] if len(sys.argv) == 6 else "10.77.0.0/16")
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), cidr))
