"""Matrix power levels, read from room state: who may do what, and the Heron roles they become."""

from __future__ import annotations

from typing import Any

CREATOR_LEVEL = 10**9  # room version 12+: creators have unlimited power


def power_level_of(state: dict[Any, Any], user_id: str) -> int:
    """A user's power level from room state, with room version 12's creators above everyone."""
    create = state.get(("m.room.create", ""))
    if create is not None:
        version = str(create.content.get("room_version", "1"))
        if version.isdigit() and int(version) >= 12:
            creators = {create.sender, *(create.content.get("additional_creators") or [])}
            if user_id in creators:
                return CREATOR_LEVEL
    pl = state.get(("m.room.power_levels", ""))
    content = pl.content if pl is not None else {}
    return int((content.get("users") or {}).get(user_id, content.get("users_default", 0)))


def level_needed(state: dict[Any, Any], event_type: str, is_state: bool = True) -> int:
    """The power level needed to send `event_type` in the room (Matrix's defaults: 50 for state
    events, 0 for others)."""
    pl = state.get(("m.room.power_levels", ""))
    content = pl.content if pl is not None else {}
    default = content.get("state_default", 50) if is_state else content.get("events_default", 0)
    return int((content.get("events") or {}).get(event_type, default))


def roles_for_level(level: int) -> list[str]:
    """Matrix power levels as Heron roles (a policy can exempt "moderator" or "admin")."""
    if level >= CREATOR_LEVEL:
        return ["admin", "creator"]
    name = "admin" if level >= 100 else "moderator" if level >= 50 else "member"
    return [name, f"pl:{level}"]
