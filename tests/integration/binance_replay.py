"""Loopback Binance: a websocket server (the `websockets` library) and an HTTP depth endpoint (stdlib
``http.server``) that replay a recorded session, for `lob live binance` tests. Both on 127.0.0.1, free ports,
in one daemon thread each, stopped by `close`.

The websocket server sends the recording's stream messages in order from a cursor shared by all connections
(a reconnect continues where the last connection stopped). It stops before the recorded snapshot's line until
the first depth request, which is answered with that snapshot (after ``snapshot_delay_s``, so the lines before
it have been read, as the recorder read them). A later request is answered with the book as the recording
stands just after the next diff the replay sends (`BookBuilder.snapshot`): that diff, which holds the
snapshot's ``lastUpdateId``, reaches the client after the request, as Binance's first diff to apply does. ``drop_after``: abort the connection (no close frame) after
that line, once; ``skip``: lines not sent (a forced gap), still applied to the server's own book; ``inject``:
{line: text} sent (and not applied) before that line, e.g. a malformed message. ``FAULT_LEAD`` lines after each
of these faults the replay waits (at most 30 s) for the client's next depth request, so each fault is resynced
before the next one, whatever the machine's load.
"""
from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lob.data.binance_ws import BookBuilder

DEPTH_PATH = "/fapi/v1/depth"
FAULT_LEAD = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_head(recording: Path, n_lines: int, out: Path) -> Path:
    """The first ``n_lines`` lines of a gzip recording as a gzip file ``out``."""
    with gzip.open(recording, "rt") as f:
        head = [next(f) for _ in range(n_lines)]
    with gzip.open(out, "wt") as g:
        g.writelines(head)
    return out


class BinanceReplay:
    def __init__(self, recording: Path, drop_after: int | None = None, skip: frozenset[int] = frozenset(),
                 inject: dict[int, str] | None = None, snapshot_delay_s: float = 0.5):
        with gzip.open(recording, "rt") as f:
            self.lines = [line.split(" ", 1)[1] for line in f if line.strip()]
        self.snapshot_line = next(i for i, text in enumerate(self.lines) if '"lastUpdateId"' in text[:40])
        self.drop_after, self.skip, self.inject, self.delay = drop_after, skip, inject or {}, snapshot_delay_s
        self.book = BookBuilder("usdm")
        self.cursor = 0
        self.requests = 0
        self._hold: tuple[int, int] | None = None  # (line to wait at, requests seen at the fault)
        self._wanted: list[asyncio.Future] = []  # snapshot requests waiting for the next diff
        self.sent_all = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._at_snapshot = threading.Event()
        self._snapshot_served: asyncio.Event | None = None
        self.ws_port, self.http_port = _free_port(), _free_port()
        self.ws_url, self.rest_url = f"ws://127.0.0.1:{self.ws_port}", f"http://127.0.0.1:{self.http_port}{DEPTH_PATH}"
        self._ready = threading.Event()
        self._ws_thread = threading.Thread(target=self._run_ws, daemon=True)
        self._ws_thread.start()
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), self._handler())
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._http_thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("websocket replay server did not start")

    # ---------------------------------------------------------------------------------------- websocket

    def _run_ws(self) -> None:
        from websockets.asyncio.server import serve

        async def main():
            self._snapshot_served = asyncio.Event()
            self._stop = asyncio.Event()
            async with serve(self._serve, "127.0.0.1", self.ws_port):
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    async def _serve(self, ws) -> None:
        while self.cursor < len(self.lines):
            i = self.cursor
            if self._hold is not None and i >= self._hold[0]:
                for _ in range(3000):
                    if self.requests > self._hold[1]:
                        break
                    await asyncio.sleep(0.01)
                self._hold = None
            if i in self.inject or i in self.skip or i == self.drop_after:
                self._hold = (i + FAULT_LEAD, self.requests)
            if i == self.snapshot_line:
                self._at_snapshot.set()
                await self._snapshot_served.wait()
            if i in self.inject:
                await ws.send(self.inject.pop(i))
            text = self.lines[i]
            msg = json.loads(text)
            self.book.on_message(msg, 0)
            if msg.get("data", {}).get("e") == "depthUpdate" and self.book.synced:
                for wanted in self._wanted:
                    wanted.set_result(self.book.snapshot())
                self._wanted.clear()
            self.cursor = i + 1
            if i != self.snapshot_line and i not in self.skip:
                await ws.send(text.strip())
            if i == self.drop_after:
                self.drop_after = None
                ws.transport.abort()
                return
            if i % 64 == 0:
                await asyncio.sleep(0)
        self.sent_all.set()
        await ws.wait_closed()  # keep the connection open, as Binance does

    # --------------------------------------------------------------------------------------------- HTTP

    def _handler(self):
        replay = self

        class Depth(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if not self.path.startswith(DEPTH_PATH):
                    self.send_error(404)
                    return
                replay.requests += 1
                if replay.requests == 1:
                    replay._at_snapshot.wait(30)
                    threading.Event().wait(replay.delay)
                    body = replay.lines[replay.snapshot_line].encode()
                    replay._loop.call_soon_threadsafe(replay._snapshot_served.set)
                else:
                    snap = asyncio.run_coroutine_threadsafe(replay._snapshot(), replay._loop).result(10)
                    body = json.dumps(snap).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Depth

    async def _snapshot(self) -> dict:
        wanted = asyncio.get_running_loop().create_future()
        self._wanted.append(wanted)
        return await wanted

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._ws_thread.join(10)
