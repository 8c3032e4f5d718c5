"""Matrix identifiers as Heron ids.

Heron ids are `[A-Za-z0-9_.:-]{1,128}`. Matrix ids carry a sigil (`$`, `!`, `@`) that Heron does
not accept, and old-style ids may hold other characters, so the sigil is dropped and anything
else that does not fit becomes a stable hash. Event ids must round-trip (a webhook names the
message, the module redacts the event), so an event id that does not fit is refused rather than
hashed; every room version since v3 has event ids that fit.
"""

from __future__ import annotations

import hashlib
import re

_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def _strip(matrix_id: str) -> str:
    return matrix_id[1:] if matrix_id[:1] in "$!@#+" else matrix_id


def heron_id(matrix_id: str) -> str:
    """Room, space and user ids: the id without its sigil, or `h-<hash>` when that does not fit."""
    bare = _strip(matrix_id)
    if _ID.match(bare):
        return bare
    return "h-" + hashlib.sha256(matrix_id.encode()).hexdigest()[:40]


def message_id_for_event(event_id: str) -> str | None:
    """The Heron message id of a Matrix event id, or None when it cannot round-trip."""
    bare = _strip(event_id)
    return bare if event_id.startswith("$") and _ID.match(bare) else None


def event_id_for_message(message_id: str) -> str:
    return "$" + message_id


def guild_id_for_room(room_id: str) -> str:
    """The guild of a room that belongs to no mapped space (see HeronConfig.spaces)."""
    return heron_id(room_id)
