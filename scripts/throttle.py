#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that paces each connection's server-to-client bytes to a rate.

It stands for a link that is slow per connection (a per-flow shaper, a far CDN): every
connection gets *rate* bytes per second with a burst of 64 KiB, however many requests it
carries.  nginx's ``limit_rate`` is per *request* and lets each new request send a second's
worth at once, which rewards a client for making many small requests; this does not.

    python scripts/throttle.py --rate 2m 8001:9001 8002:9002   # listen:upstream
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

BURST = 64 * 1024
CHUNK = 64 * 1024


def parse_rate(text: str) -> float:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    return float(t[:-1]) * units[t[-1]] if t[-1] in units else float(t)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float | None
) -> None:
    start, sent = time.monotonic(), 0
    try:
        while data := await reader.read(CHUNK):
            if rate is not None:
                # Never ahead of the rate by more than the burst.
                due = start + (sent + len(data) - BURST) / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


def _handler(
    upstream: int, rate: float
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pump(client_r, up_w, None), _pump(up_r, client_w, rate))

    return handle


async def serve(pairs: list[tuple[int, int]], rate: float) -> None:
    servers = [
        await asyncio.start_server(_handler(up, rate), "127.0.0.1", listen) for listen, up in pairs
    ]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", default="2m", help="bytes per second per connection (2m = 2 MiB)")
    ap.add_argument("pairs", nargs="+", help="LISTEN:UPSTREAM port pairs")
    args = ap.parse_args()
    pairs = [(int(a), int(b)) for a, b in (p.split(":") for p in args.pairs)]
    try:
        asyncio.run(serve(pairs, parse_rate(args.rate)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
