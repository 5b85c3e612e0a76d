"""A TCP relay on loopback that a test puts between a gateway and its Redis, to do to the
gateway's connections what a network does: freeze them (the open ones go silent while new
ones still work), cut them (every one closed, new ones closed as they arrive) and delay
them (every byte held a while each way).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

_CHUNK = 64 * 1024


class _Link:
    """One relayed connection: its two sockets' writers, and whether it is frozen."""

    def __init__(self, writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self.writers = writers
        self.flowing = asyncio.Event()
        self.flowing.set()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class TcpRelay:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`target_port` from a background thread."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._links: set[_Link] = set()
        self._refusing = False
        self._delay = 0.0
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> TcpRelay:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        self._run(self._cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        """A Redis URL through the relay."""
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        """The connections open now go silent, for good (nothing passes either way, nothing is
        closed: a dead path no one told the ends about); new ones work."""

        def freeze() -> None:
            for link in self._links:
                link.flowing.clear()

        self._call(freeze)

    def cut(self) -> None:
        """Close every connection, and each new one as it arrives, until `heal`."""

        def cut() -> None:
            self._refusing = True
            for link in self._links:
                link.close()
            self._links.clear()

        self._call(cut)

    def heal(self) -> None:
        """Relay new connections again, without delay (frozen ones stay frozen)."""

        def heal() -> None:
            self._refusing, self._delay = False, 0.0

        self._call(heal)

    def delay(self, seconds: float) -> None:
        """Hold every chunk `seconds` before passing it on, each way, from now on."""

        def delay() -> None:
            self._delay = seconds

        self._call(delay)

    def _run(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    def _call(self, action: Any) -> None:
        async def run() -> None:
            action()

        self._run(run())

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.close()
            return
        link = _Link((writer, up_writer))
        self._links.add(link)
        await asyncio.gather(
            self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
        )
        self._links.discard(link)
        link.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                await link.flowing.wait()  # frozen: held for ever
                if self._delay:
                    await asyncio.sleep(self._delay)
                writer.write(data)
                await writer.drain()
        for end in link.writers:
            end.close()
