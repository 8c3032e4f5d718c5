"""Stamps each request's arrival time, for budgets measured from when the caller's request arrived.

Pure ASGI and installed outermost (api/main.py), so the stamp is taken before body reading,
validation, authentication or any queueing in between; a budget measured from the route handler's
start would miss exactly the waiting that grows under load.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request

ARRIVED = "arrived"


class ArrivalStamp:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[ARRIVED] = time.perf_counter()
        await self.app(scope, receive, send)


def arrival(request: Request) -> float:
    """The request's `time.perf_counter()` at arrival (now, for an app built without the stamp)."""
    stamped = request.scope.get("state", {}).get(ARRIVED)
    return float(stamped) if stamped is not None else time.perf_counter()
