"""Runtime settings, read from HERON_* environment variables (pydantic-settings).

Embedded defaults need no server: SQLite under ./var and an in-process worker. Setting
HERON_REDIS_URL switches the asynchronous path to Celery on Redis; HERON_DATABASE_URL
switches the store (e.g. postgresql+psycopg://...). `get_settings()` is cached; tests
override it with `override_settings()`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HERON_", extra="ignore")

    env: str = Field(default="development", description="'production' refuses unsafe defaults")
    database_url: str = f"sqlite:///{REPO_ROOT / 'var' / 'heron.db'}"
    redis_url: str | None = None
    # Scorers to run, by registry name. "text" loads the committed text-model artifact.
    scorers: list[str] = ["rules", "links", "text"]
    sync_budget_ms: float = 250.0
    max_body_bytes: int = 1_000_000
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff_base_s: float = 1.0
    webhook_backoff_max_s: float = 300.0
    webhook_replay_window_s: int = 300
    # A message accepted but undecided for this long is re-enqueued (Redis lost it, a worker died).
    requeue_after_s: float = 30.0
    sweep_interval_s: float = 5.0
    embedded_workers: int = 2
    text_quantize: str = "auto"
    # Webhook URLs may target loopback/private/link-local addresses (development, tests, a receiver
    # on the same LAN). Off by default: a tenant must not reach Redis, PostgreSQL or the LAN through
    # Heron (pipeline/netguard.py). Cloud metadata addresses stay refused either way.
    allow_private_webhooks: bool = False
    api_key_pepper: str = "heron-dev-pepper"

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production" and self.api_key_pepper == "heron-dev-pepper":
            raise ValueError("HERON_API_KEY_PEPPER must be set in production")
        return self

    @property
    def use_celery(self) -> bool:
        return bool(self.redis_url)


_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, built from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings()
    return _current


def override_settings(**values: object) -> Settings:
    """Replace the settings (tests, CLI flags); environment variables still fill the rest."""
    global _current
    _current = Settings(**values)  # type: ignore[arg-type]
    return _current


def reset_settings() -> None:
    global _current
    _current = None
