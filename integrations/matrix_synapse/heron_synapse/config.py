"""The module's `config:` block in homeserver.yaml, checked when Synapse starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    # Space room id -> guild id: rooms whose m.space.parent is a listed space share its guild.
    spaces: dict[str, str] = field(default_factory=dict)
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
            raise ConfigError("heron_synapse: 'spaces' maps space room ids to guild ids")
        return cls(**raw)
