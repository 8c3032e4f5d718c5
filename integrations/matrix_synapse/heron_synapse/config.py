"""The module's `config:` block in homeserver.yaml, checked when Synapse starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Heron's id rule (pipeline/types.py `Id`): a guild id that breaks it would fail every message.
_HERON_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
ENCRYPTED_MODES = ("allow", "reject")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class HeronConfig:
    api_url: str
    api_key: str
    # The pre-send check's whole budget: the call to Heron (and any image download) must end
    # within it, or fail_open decides.
    budget_ms: int = 200
    # When Heron is down, slow or refusing: true delivers the message, false rejects it.
    fail_open: bool = True
    # Without a secret the module registers no webhook resource (pre-send checks only).
    webhook_secret: str | None = None
    webhook_path: str = "/_heron/webhook"
    webhook_window_s: int = 300
    # Space -> guild id: rooms whose m.space.parent is a listed space share its guild. A key is the
    # space's room id (`!id:server`) or an alias of it on this homeserver (`#name:server`), which
    # an admin can write down before the space exists (its room id is only known afterwards).
    spaces: dict[str, str] = field(default_factory=dict)
    # Any other space: its rooms share one guild named after the space's room id (without `!`).
    map_spaces: bool = False
    # m.room.encrypted events cannot be read by the server: "allow" delivers them unchecked,
    # "reject" refuses them and refuses turning encryption on (counted and logged either way).
    encrypted: str = "allow"
    # Where the module downloads m.image media from (this homeserver's client API).
    homeserver_url: str = "http://127.0.0.1:8008"
    # The local account the module uses to download media.
    bot_localpart: str = "heron"
    moderate_images: bool = True
    max_image_bytes: int = 720_000  # Heron's inline attachment limit (decoded)
    # How long timeout_author mutes the author (power level below the send level), in seconds.
    mute_seconds: int = 600
    mute_check_interval_s: float = 5.0
    # SQLite file for applied revisions and mutes; None keeps them in memory (lost on restart).
    state_path: str | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> HeronConfig:
        if not isinstance(raw, dict):
            raise ConfigError("heron_synapse: config must be a mapping")
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"heron_synapse: unknown config keys {sorted(unknown)}")
        for key in ("api_url", "api_key"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ConfigError(f"heron_synapse: '{key}' is required")
        budget = raw.get("budget_ms", 200)
        if not isinstance(budget, int) or isinstance(budget, bool) or not 1 <= budget <= 60_000:
            raise ConfigError("heron_synapse: 'budget_ms' must be an integer from 1 to 60000")
        if not isinstance(raw.get("fail_open", True), bool):
            raise ConfigError("heron_synapse: 'fail_open' must be true or false")
        spaces = raw.get("spaces", {})
        if not isinstance(spaces, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in spaces.items()
        ):
            raise ConfigError("heron_synapse: 'spaces' maps space room ids or aliases to guild ids")
        for key, guild in spaces.items():
            # Room ids carry no server part from room version 12 on (`!<hash>`); aliases always do.
            if not (key.startswith("!") and len(key) > 1) and not (key.startswith("#") and ":" in key[2:]):
                raise ConfigError(
                    f"heron_synapse: 'spaces' key {key!r} is not a room id (!id) or an alias (#name:server)"
                )
            if not _HERON_ID.match(guild):
                raise ConfigError(f"heron_synapse: 'spaces' guild id {guild!r} must be 1-128 of A-Z a-z 0-9 _ . : -")
        if not isinstance(raw.get("map_spaces", False), bool):
            raise ConfigError("heron_synapse: 'map_spaces' must be true or false")
        if raw.get("encrypted", "allow") not in ENCRYPTED_MODES:
            raise ConfigError(f"heron_synapse: 'encrypted' must be one of {', '.join(ENCRYPTED_MODES)}")
        return cls(**raw)
