"""Runtime settings, read from HERON_* environment variables (pydantic-settings).

Embedded defaults need no server: SQLite under ./var and an in-process worker. Setting
HERON_REDIS_URL switches the asynchronous path to Celery on Redis; HERON_DATABASE_URL
switches the store (e.g. postgresql+psycopg://...). `get_settings()` is cached; tests
override it with `override_settings()`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_brands() -> dict[str, list[str]]:
    from pipeline.features.domains import DEFAULT_PROTECTED_BRANDS

    return {k: list(v) for k, v in DEFAULT_PROTECTED_BRANDS.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HERON_", extra="ignore")

    env: str = Field(default="development", description="'production' refuses unsafe defaults")
    database_url: str = f"sqlite:///{REPO_ROOT / 'var' / 'heron.db'}"
    redis_url: str | None = None
    # Scorers to run, by registry name. "text" loads the committed text-model artifact, "behaviour"
    # the behaviour model (models/behaviour) over the windowed behaviour features, "image_hash" the
    # tenant's PDQ hash banks; the other image_* scorers read decoded attachments
    # (docs/images-models.md) and skip text-only messages.
    scorers: list[str] = ["rules", "links", "text", "behaviour", "image_hash", "image_nsfw", "image_qr", "image_ocr"]
    sync_budget_ms: float = 250.0
    max_body_bytes: int = 1_000_000
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff_base_s: float = 1.0
    webhook_backoff_max_s: float = 300.0
    webhook_replay_window_s: int = 300
    # Outbox drainer: attempts in flight per tenant and in all, how often it looks when not woken,
    # and the per-tenant circuit breaker (consecutive failures to open; cooldown doubling to max).
    webhook_tenant_concurrency: int = Field(default=4, ge=1)
    outbox_max_inflight: int = Field(default=64, ge=1)
    outbox_poll_s: float = Field(default=0.5, gt=0)
    webhook_breaker_threshold: int = Field(default=5, ge=1)
    webhook_breaker_base_s: float = Field(default=5.0, gt=0)
    webhook_breaker_max_s: float = Field(default=300.0, gt=0)
    # A message accepted but undecided for this long is re-enqueued (Redis lost it, a worker died).
    requeue_after_s: float = 30.0
    sweep_interval_s: float = 5.0
    embedded_workers: int = 2
    # The text model's serving knobs (pipeline/scorers/text.py; defaults measured with
    # bench/bench_text.py on 2 cores). quantize: auto | onnx-int8-sq | onnx-int8 | torch-int8 |
    # fp32, where auto is the path `heron eval text` chose by measurement.
    text_quantize: str = "auto"
    text_max_batch: int = Field(default=8, ge=1, description="messages per forward pass")
    text_group: int = Field(default=8, ge=1, description="batches' worth of queued requests sorted by length together")
    text_max_wait_ms: float = Field(default=0.0, ge=0, description="how long a batch waits for company")
    text_workers: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, description="model threads")
    text_threads: int | None = Field(default=None, ge=1, description="threads per worker; None: cores / workers")
    text_cache_size: int = Field(default=50_000, ge=0, description="repeat cache entries (0 turns it off)")
    # Image scorers (pipeline/scorers/image_nsfw.py, image_scam.py; bench/bench_images.py).
    # image_backend: onnx | torch for the NSFW model (ONNX Runtime measured 4.4x torch on batches
    # of 16 on 2 cores, bench/README.md); image_threads None leaves torch's process-wide thread
    # count (the text model's) alone; OCR runs one tesseract process per frame on
    # image_ocr_workers threads.
    image_backend: Literal["torch", "onnx"] = "onnx"
    image_max_batch: int = Field(default=16, ge=1, description="frames per NSFW forward pass")
    image_threads: int | None = Field(default=None, ge=1, description="torch threads; None: leave as set")
    image_cache_size: int = Field(default=4096, ge=0, description="NSFW results kept by image sha256")
    image_ocr_workers: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1)
    image_ocr_timeout_s: float = Field(default=15.0, gt=0, description="per frame; a timeout is a missing signal")
    image_ocr_lang: str = "eng"
    # The platform phishing list(s) for the link scorer, several paths joined by os.pathsep; unset:
    # the bundled bank models/links/known_bad.json.gz (`heron train links-bank` rebuilds it).
    link_blocklist: str | None = None
    # The learned domain model (models/links/artifact; `heron train links`): on by default; the
    # folder may be overridden. Protected brands for look-alike checks: brand word -> its own
    # registrable domains (JSON in HERON_LINK_PROTECTED_BRANDS); see pipeline/scorers/link_lookalike.py.
    link_model: bool = True
    link_model_dir: Path | None = None
    link_protected_brands: dict[str, list[str]] = Field(default_factory=_default_brands)
    # Registrable domains the look-alike checks and the learned model leave alone (a deployment's
    # own sites), on top of the brands' domains and pipeline.features.domains.COMMUNITY_DOMAINS.
    link_allowed_domains: list[str] = []
    # What a `support` decision's webhook carries for the author (docs/webhooks.md): shown to a person
    # who may be at risk, so plain, kind and generic by default; set your region's services.
    support_resources: str = Field(
        default=(
            "It sounds like you might be going through a lot right now. You don't have to face it alone. "
            "If you are in immediate danger, call your local emergency number. You can find a free, "
            "confidential crisis line in your country at https://findahelpline.com, or talk to someone you trust."
        ),
        min_length=1, max_length=2000,
    )
    # Where derived model files (the exported ONNX graphs) are cached; unset: a per-user temp folder.
    cache_dir: Path | None = None
    # Webhook URLs may target loopback/private/link-local addresses (development, tests, a receiver
    # on the same LAN). Off by default: a tenant must not reach Redis, PostgreSQL or the LAN through
    # Heron (pipeline/netguard.py). Cloud metadata addresses stay refused either way.
    allow_private_webhooks: bool = False
    # Where the behaviour features keep their windowed counters (pipeline/features/behaviour.py):
    # "auto" = Redis when HERON_REDIS_URL is set (shared by every API and worker process), else
    # in-process; "memory" forces in-process (one process's view), "redis" requires Redis.
    behaviour_backend: Literal["auto", "memory", "redis"] = "auto"
    api_key_pepper: str = "heron-dev-pepper"
    # Log lines: "json" (one object per line, with request/message/tenant ids), "text", or "auto"
    # (text when stderr is a terminal, JSON otherwise). See pipeline/logs.py.
    log_format: Literal["auto", "json", "text"] = "auto"
    # Port of a `heron worker`'s Prometheus endpoint (0 = none); `--metrics-port` overrides it.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
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
    # Images (pipeline/images, docs/images.md). Limits on what one attachment may cost to decode:
    # bytes (a fetched URL; inline bytes are capped by the request body), pixels per frame (refused
    # from the headers, before decoding: decompression bombs), frames in an animation, frames
    # actually decoded, and frames kept for the scorers (evenly spaced).
    image_max_bytes: int = Field(default=8_000_000, ge=1)
    image_max_pixels: int = Field(default=40_000_000, ge=1)
    image_max_frames: int = Field(default=1_000, ge=1)
    image_max_decode_frames: int = Field(default=64, ge=1)
    image_sample_frames: int = Field(default=4, ge=1)
    # Fetching image URLs: one deadline for the whole fetch, redirects capped (each re-checked).
    image_fetch_timeout_s: float = Field(default=5.0, gt=0)
    image_fetch_max_redirects: int = Field(default=3, ge=0)
    # Image URLs may point at loopback/private addresses (tests, a LAN media server). Off by default
    # (SSRF); metadata addresses stay refused either way.
    allow_private_image_urls: bool = False
    # POST /v1/moderate answers on text alone within its budget and scores images afterwards (the
    # decision says `status: partial` with `pending_signals`; the full one follows as a revision).
    sync_defer_images: bool = True
    # Retroactive bank matching: image hashes (never the images) are kept this many days.
    image_hash_retention_days: int = Field(default=30, ge=0)
    # Thumbnail kept for messages that go to review (longest side, pixels).
    image_thumbnail_px: int = Field(default=160, ge=16, le=512)
    # Review desk (docs/review.md): the share of items a second reviewer decides again, blind; how
    # long a claim holds an item; how long a reviewer's browser session lasts; whether its cookie
    # is marked Secure (set it behind HTTPS; the default serves plain-HTTP development).
    review_double_share: float = Field(default=0.1, ge=0.0, le=1.0)
    review_claim_s: float = Field(default=600.0, gt=0)
    review_session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    review_cookie_secure: bool = False
    # Sign-in attempts at /review/login, per username and per client address (both must have
    # room): password guessing stops after a handful of tries while a reviewer who mistypes twice
    # is not locked out. Counted with the other limits (Redis when configured).
    rate_limit_login: str = "10/minute;50/hour"
    # The password for `heron users create` when it is scripted (else --password-stdin or a prompt).
    user_password: SecretStr | None = None
    # The model registry (pipeline/models_registry.py, docs/retraining.md): candidate versions and
    # serving.json, the one file naming the version of each model kind that serves; unset:
    # var/models in the repository. Without serving.json the bundled models serve.
    models_dir: Path | None = None
    # Shadow mode (docs/shadow.md): the async path also decides each message with a candidate and
    # records what it would have done in `shadow_decisions`, never acting on it. Any of: a candidate
    # text-model artifact folder (quantised as HERON_SHADOW_TEXT_QUANTIZE, default as served), a
    # policy JSON file applied instead of every guild's own, learned ensemble weights. All off by
    # default; a shadow that fails to load or to run is logged and counted, never the live decision's.
    shadow_text_artifact: Path | None = None
    shadow_text_quantize: str | None = None
    shadow_policy: Path | None = None
    shadow_stacking: Path | None = None
    # Messages waiting for the shadow (it runs beside the live path on its own thread); past this,
    # messages go unshadowed and are counted (heron_shadow_dropped_total) instead of piling up.
    shadow_queue_max: int = Field(default=10_000, ge=1)
    # The share of messages shadowed (by a hash of tenant and message id): a candidate text model costs
    # about what the serving one does (bench/bench_shadow.py), so a busy deployment may shadow a sample.
    shadow_sample: float = Field(default=1.0, gt=0.0, le=1.0)
    # Learned ensemble weights (`heron train stacking`), served instead of the hand-set ones; off by
    # default. A file that does not validate is refused here, at start-up.
    ensemble_stacking: Path | None = None

    @field_validator("shadow_text_artifact", "shadow_text_quantize", "shadow_policy", "shadow_stacking",
                     "ensemble_stacking", mode="before")
    @classmethod
    def _blank_is_off(cls, value: object) -> object:
        """HERON_SHADOW_POLICY= (empty) turns it off, as unset does."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ensemble_stacking")
    @classmethod
    def _stacking_file(cls, value: Path | None) -> Path | None:
        """Refuse a stacking file that cannot be served at start-up, not on the first message."""
        if value is None:
            return None
        from pipeline.stacking import StackingError, load

        try:
            load(value)
        except StackingError as exc:
            raise ValueError(f"HERON_ENSEMBLE_STACKING={str(value)!r} is refused: {exc}") from None
        return value

    @field_validator("rate_limit_per_key", "rate_limit_per_guild", "rate_limit_other", "rate_limit_login")
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
