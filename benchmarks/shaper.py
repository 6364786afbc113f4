"""A network-shaping TCP proxy: each connection gets a one-way delay and a
bandwidth cap, in both directions (a delay line plus a token bucket per
connection and direction), as a scaled-down model of a link to a real object
store, where one connection moves tens of MB/s and the first byte takes tens of
milliseconds.

    python benchmarks/shaper.py --upstream 127.0.0.1:5000 --port 8000 --rate 12MiB --delay-ms 10

Bytes read from one side are held until ``delay`` after they arrived, then
written to the other side no faster than ``rate`` bytes per second; at most
about one bandwidth-delay product (and never less than 256 KiB) is buffered per
direction, so a fast sender is held back as a real link holds it back.

Also usable in-process (tests, benchmarks)::

    with Shaper(upstream="127.0.0.1:5000", rate=12 * 2**20, delay=0.010) as shaper:
        ... shaper.url ...; shaper.peak  # the most connections open at once
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
import time
from dataclasses import dataclass

CHUNK = 64 * 1024
MIN_BUFFER = 256 * 1024
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?(?:/s)?\s*$", re.IGNORECASE)


def parse_rate(text: str) -> float:
    """Bytes per second from ``"12MiB"``, ``"500KiB"`` or a plain number (0: no cap)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (e.g. 12MiB)")
    number, unit = match.groups()
    return float(number) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[unit.lower()]


@dataclass
class _Counters:
    open: int = 0
    peak: int = 0
    total: int = 0


class Shaper:
    """The proxy, served by an asyncio loop in a background thread.

    Args:
        upstream: ``host:port`` to forward to.
        rate: bytes per second per connection and direction (0: unlimited).
        delay: one-way delay in seconds, added in each direction.
        port: where to listen on 127.0.0.1 (0: a free port).
    """

    def __init__(self, upstream: str, rate: float, delay: float, port: int = 0) -> None:
        host, _, up_port = upstream.rpartition(":")
        self.upstream = (host or "127.0.0.1", int(up_port))
        self.rate, self.delay, self.port = rate, delay, port
        self.counters = _Counters()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (for an HTTP upstream)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def peak(self) -> int:
        """The most connections that were open at once."""
        return self.counters.peak

    def reset(self) -> None:
        """Forget the peak and total (open connections stay counted)."""
        with self._lock:
            self.counters.peak, self.counters.total = self.counters.open, 0

    def start(self) -> None:
        """Listen and serve in a background thread."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="shaper")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the shaper did not start within 10 s")

    def stop(self) -> None:
        """Close the listener and every connection."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._server = None

    def __enter__(self) -> Shaper:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the command line)."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = server.sockets[0].getsockname()[1]
        print(f"shaping 127.0.0.1:{self.port} -> {self.upstream[0]}:{self.upstream[1]}: "
              f"{self.rate / 2**20:g} MiB/s, {self.delay * 1000:g} ms one way, per connection",
              flush=True)
        async with server:
            await server.serve_forever()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with self._lock:
            self.counters.open += 1
            self.counters.total += 1
            self.counters.peak = max(self.counters.peak, self.counters.open)
        try:
            try:
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
            except (TimeoutError, OSError):
                client_w.close()
                return
            await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w),
                                 return_exceptions=True)
            for writer in (client_w, up_w):
                writer.close()
        finally:
            with self._lock:
                self.counters.open -= 1

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: a delay line feeding a token bucket."""
        limit = max(MIN_BUFFER, int(2 * self.rate * self.delay)) // CHUNK + 1
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(limit)

        async def receive() -> None:
            try:
                while data := await reader.read(CHUNK):
                    await line.put((time.monotonic() + self.delay, data))
            except (ConnectionError, OSError):
                pass  # the sender's side went away: this direction ends here
            # Not in a finally: cancelled (the other side closed, or the shaper
            # stops), nobody takes from the line any more, and a put into a full
            # line would wait forever.
            await line.put((0.0, b""))

        receiving = asyncio.ensure_future(receive())
        free_at = 0.0  # when the link has sent everything written so far
        try:
            while True:
                due, data = await line.get()
                if not data:
                    break
                now = time.monotonic()
                start = max(now, due, free_at)
                if start > now:
                    await asyncio.sleep(start - now)
                writer.write(data)
                await writer.drain()
                free_at = start + (len(data) / self.rate if self.rate else 0.0)
            if writer.can_write_eof():
                writer.write_eof()
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="host:port to forward to")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--rate", type=parse_rate, default=parse_rate("12MiB"),
                        help="bandwidth per connection and direction, e.g. 12MiB (0: no cap)")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay, ms")
    args = parser.parse_args()
    try:
        Shaper(args.upstream, args.rate, args.delay_ms / 1000, args.port).serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
