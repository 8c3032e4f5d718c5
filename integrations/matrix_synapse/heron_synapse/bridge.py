"""Run asyncio work (httpx, sqlite) on its own thread and await it from Twisted.

Synapse runs on a Twisted reactor, not asyncio, so `httpx.AsyncClient` cannot run on Synapse's
loop. Instead one daemon thread runs an asyncio loop for all of the module's I/O (calls to Heron,
media downloads, the module's small state database); the reactor only awaits a Deferred that the
loop thread fires with `callFromThread`. Nothing the module does blocks the reactor, and unlike
`defer_to_thread` it takes no slot in Synapse's shared thread pool while a request is in flight.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from twisted.internet import defer

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "heron-synapse") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def deferred(self, coro: Coroutine[Any, Any, T]) -> defer.Deferred[T]:
        """A Deferred (fired on the reactor thread) for a coroutine run on the loop thread.

        Callers in Synapse wrap it with `make_deferred_yieldable` (logcontext rules)."""
        from twisted.internet import reactor

        d: defer.Deferred[T] = defer.Deferred()
        fut = self.submit(coro)

        def done(f: Future[T]) -> None:
            exc = f.exception()
            if exc is not None:
                reactor.callFromThread(d.errback, exc)  # type: ignore[attr-defined]
            else:
                reactor.callFromThread(d.callback, f.result())  # type: ignore[attr-defined]

        fut.add_done_callback(done)
        return d
