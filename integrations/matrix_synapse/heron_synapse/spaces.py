"""Which guild a room belongs to when it sits in a Matrix space.

A room says it is in a space with an `m.space.parent` state event; anyone who administers the
room can send one, naming any space. Taken on its word, that would let a room adopt the policy
(and exemptions) of a community it does not belong to, so a parent counts only when the space
confirms it, as the Matrix spec suggests clients check: the space has a matching `m.space.child`
event for the room, or the parent event's sender could send one in the space. This homeserver
must be in the space to see either (it is, as soon as one of its users has joined it).

Nothing here is cached except alias look-ups: both rooms' current state is read on every message
(Synapse serves it from its own caches), so a room added to a space, or taken out of one, is
mapped accordingly from its next message, with no restart.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from heron_synapse.ids import heron_id
from heron_synapse.power import level_needed, power_level_of

logger = logging.getLogger("heron_synapse")

# How long an alias key's room id is trusted before the room directory is asked again: an alias
# that is re-pointed to another space takes effect within this. An alias that does not exist
# (yet) is asked again sooner, so a space created after Synapse started is picked up quickly.
ALIAS_TTL_S = 30.0
MISSING_ALIAS_TTL_S = 5.0


class SpaceMapper:
    def __init__(self, api: ModuleApi, spaces: dict[str, str], map_spaces: bool) -> None:
        self.api = api
        self.by_id = {k: v for k, v in spaces.items() if k.startswith("!")}
        self.by_alias = {k: v for k, v in spaces.items() if k.startswith("#")}
        self.map_spaces = map_spaces
        self._aliases: dict[str, tuple[str | None, float]] = {}

    @property
    def enabled(self) -> bool:
        """False when no space is configured: the room's m.space.parent is then not even read."""
        return bool(self.by_id or self.by_alias or self.map_spaces)

    async def guild_for(self, room_id: str, room_state: dict[Any, Any]) -> str | None:
        """The guild of the space `room_id` is in, or None when it is its own guild.

        A room may list several parents. A configured space (`spaces`) wins over one that is only
        mapped by `map_spaces`; among equals the parent marked `canonical` comes first, then the
        lowest space id, so the choice is the same on every message."""
        parents: list[tuple[bool, str, Any]] = []
        for (etype, key), ev in room_state.items():
            via = ev.content.get("via")
            # A parent event without `via` is how a room leaves a space (the spec's removal).
            if etype == "m.space.parent" and key.startswith("!") and isinstance(via, (list, tuple)) and via:
                parents.append((ev.content.get("canonical") is not True, key, ev))
        if not parents:
            return None
        parents.sort(key=lambda p: (p[0], p[1]))
        aliased = await self._aliased_spaces() if self.by_alias else {}
        fallback: str | None = None
        for _rank, space_id, ev in parents:
            configured = self.by_id.get(space_id) or aliased.get(space_id)
            if configured is None and (not self.map_spaces or fallback is not None):
                continue
            if not await self._confirmed(space_id, room_id, ev.sender):
                logger.debug("heron_synapse: %s names %s as its space, which does not confirm it", room_id, space_id)
                continue
            if configured is not None:
                return configured
            fallback = heron_id(space_id)
        return fallback

    async def _aliased_spaces(self) -> dict[str, str]:
        """Space room id -> guild for the alias keys, from the room directory."""
        now = time.monotonic()
        out: dict[str, str] = {}
        for alias, guild in self.by_alias.items():
            cached = self._aliases.get(alias)
            if cached is None or cached[1] <= now:
                try:
                    space_id: str | None = (await self.api.lookup_room_alias(alias))[0]
                    cached = (space_id, now + ALIAS_TTL_S)
                except SynapseError:  # no such alias (yet)
                    cached = (None, now + MISSING_ALIAS_TTL_S)
                self._aliases[alias] = cached
            if cached[0] is not None:
                out.setdefault(cached[0], guild)
        return out

    async def _confirmed(self, space_id: str, room_id: str, parent_sender: str) -> bool:
        """The space lists the room as a child, or the parent's sender could make it list it."""
        try:
            state = await self.api.get_room_state(
                space_id, [("m.space.child", room_id), ("m.room.power_levels", ""), ("m.room.create", "")]
            )
        except Exception:  # a space this homeserver is not in, or cannot read
            logger.debug("heron_synapse: cannot read the state of space %s", space_id, exc_info=True)
            return False
        if not state:
            return False
        child = state.get(("m.space.child", room_id))
        via = child.content.get("via") if child is not None else None
        if isinstance(via, (list, tuple)) and via:
            return True
        return power_level_of(state, parent_sender) >= level_needed(state, "m.space.child")
