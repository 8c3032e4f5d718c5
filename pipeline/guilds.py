"""Guild configuration as the pipeline sees it: policy, word and link lists, with versions.

Domain values, not storage: the store reads and writes them, scorers and the policy use them,
and none of those needs to import the others to share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.policy import PLATFORM_DEFAULT, GuildPolicy


@dataclass(frozen=True)
class GuildLists:
    """Per-guild word lists, in the spirit of Discord AutoMod.

    `keywords` map a category to blocked terms (matched after evasion-aware normalisation,
    `*` as a wildcard at either end); `regexes` map a category to patterns; `allowlist` terms
    are never matched; `blocked_links` are extra bad domains on top of the platform list.
    """

    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)
    regexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    allowlist: tuple[str, ...] = ()
    blocked_links: tuple[str, ...] = ()
    version: int = 0


EMPTY_LISTS = GuildLists()


@dataclass(frozen=True)
class GuildConfig:
    """What scoring needs to know about a guild: its policy and word lists, with versions."""

    guild_id: str | None
    policy: GuildPolicy
    policy_version: int
    lists: GuildLists


PLATFORM_GUILD = GuildConfig(None, PLATFORM_DEFAULT, 0, EMPTY_LISTS)


def lists_from_json(body: dict[str, Any], version: int = 0) -> GuildLists:
    return GuildLists(
        keywords={k: tuple(v) for k, v in (body.get("keywords") or {}).items()},
        regexes={k: tuple(v) for k, v in (body.get("regexes") or {}).items()},
        allowlist=tuple(body.get("allowlist") or ()),
        blocked_links=tuple(body.get("blocked_links") or ()),
        version=version,
    )
