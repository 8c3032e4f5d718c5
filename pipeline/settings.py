"""Runtime settings, read from HERON_* environment variables (pydantic-settings).

Embedded defaults need no server: SQLite under ./var and an in-process worker. Setting
HERON_REDIS_URL switches the asynchronous path to Celery on Redis; HERON_DATABASE_URL
switches the store (e.g. postgresql+psycopg://...). `get_settings()` is cached; tests
override it with `override_settings()`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator
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
    allow_private_webhooks: bool = True
    api_key_pepper: str = "heron-dev-pepper"
    # Rate limits in the `limits` notation ("50/second", several joined by ";"; "" = none), kept in
    # Redis when HERON_REDIS_URL is set (shared by every API process), else per process. Per key
    # means per tenant: all of a tenant's keys share one allowance. The defaults sit above what one
    # 2-core API process can serve (~350 req/s), so they stop a runaway client without throttling a
    # single tenant's normal peak; set them lower per tenant for fairness (docs/operations.md).
    rate_limit_per_key: str = "500/second"
    rate_limit_per_guild: str = "100/second"
    # Every other /v1 route (reads, guild and webhook admin), per key.
    rate_limit_other: str = "100/second"
    # Load shedding on POST /v1/moderate: a request that cannot be decided within the sync budget
    # is handed to the async path (202) unless that path's backlog is over this bound (429
    # overloaded). The backlog is what the dispatcher reports: messages waiting for the embedded
    # worker, or tasks (up to 128 messages each) waiting in the Celery queue.
    shed_max_backlog: int = Field(default=10_000, ge=0)

    @field_validator("rate_limit_per_key", "rate_limit_per_guild", "rate_limit_other")
    @classmethod
    def _parse_rate_limit(cls, value: str, info: ValidationInfo) -> str:
        """Refuse a malformed limit at start-up instead of on the first request."""
        from limits import parse_many

        env = f"HERON_{(info.field_name or '').upper()}"
        if not value.strip():
            return ""
        try:
            items = parse_many(value)
        except ValueError:
            raise ValueError(
                f"{env}={value!r} is not a rate limit; use the `limits` notation, e.g. '50/second' or "
                "'50/second;1000/minute' (or '' for no limit)"
            ) from None
        if any(item.amount < 1 for item in items):
            raise ValueError(f"{env}={value!r} would refuse every request; a limit allows at least 1")
        return value.strip()

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
