"""Per-tenant and per-guild rate limits, over the `limits` library.

Why: without limits one API key could send thousands of requests a second and every other tenant
queued behind them (issue #17). The limits are counted where every API process sees them: in Redis
when `HERON_REDIS_URL` is set, so `heron serve --workers N` and several hosts share one allowance,
else in this process's memory (the embedded setup is one process anyway).

The strategy is the moving window: exact (a burst at a window's edge cannot double the limit, as
a fixed window allows) and, on Redis, one Lua call per limit and request.

Redis is an aid here, not a dependency of moderation: when it fails or stalls, checks fall back to
this process's own counters at once (a short timeout, then `RETRY_SHARED_AFTER_S` of local-only
checks before Redis is tried again), the fallback is logged and counted, and no request fails or
waits on it. Limits then hold per process instead of across processes.

Identifiers are tenant-scoped: tenant A's guild "g1" and tenant B's guild "g1" are different
counters, and a tenant's flood only spends its own allowance.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from pipeline.settings import Settings

log = logging.getLogger(__name__)

# The names of the limits, as they appear in metrics and in the 429's message.
PER_KEY = "per_key"
PER_GUILD = "per_guild"
OTHER = "other"
LOGIN = "login"


@dataclass(frozen=True)
class Verdict:
    """What a check decided. `retry_after_s` (≥ 1) is set when refused: the seconds until the
    refusing window has room again. `fallback` says this process's own counters decided because
    the shared store (Redis) could not answer."""

    allowed: bool
    limit: str | None = None
    retry_after_s: int = 0
    fallback: bool = False


_ALLOWED = Verdict(True)

Check = tuple[RateLimitItem, str, tuple[str, ...]]


def _async_uri(redis_url: str) -> str:
    """The `limits` URI for a redis-py URL: `redis://h:p/0` -> `async+redis://h:p/0`."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class RateLimiter:
    # Per Redis call; a stalled Redis costs a request at most about this (twice, for the whole check).
    STORAGE_TIMEOUT_S = 0.25
    RETRY_SHARED_AFTER_S = 5.0
    KEY_PREFIX = "heron:ratelimit"

    def __init__(self, per_key: str = "", per_guild: str = "", other: str = "", redis_url: str | None = None,
                 login: str = "") -> None:
        self.per_key = parse_many(per_key) if per_key.strip() else []
        self.per_guild = parse_many(per_guild) if per_guild.strip() else []
        self.other = parse_many(other) if other.strip() else []
        self.login = parse_many(login) if login.strip() else []
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            storage = RedisStorage(
                _async_uri(redis_url),
                implementation="redispy",  # redis-py is already a dependency (Celery); no coredis
                key_prefix=self.KEY_PREFIX,
                socket_timeout=self.STORAGE_TIMEOUT_S,
                socket_connect_timeout=self.STORAGE_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),  # fail fast to the fallback instead of retrying in-request
            )
            self._shared = MovingWindowRateLimiter(storage)
        self._shared_down_until = 0.0
        self.fallbacks = 0  # checks decided locally because the shared store failed

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(settings.rate_limit_per_key, settings.rate_limit_per_guild, settings.rate_limit_other,
                   settings.redis_url, login=settings.rate_limit_login)

    @property
    def shared(self) -> bool:
        return self._shared is not None

    async def check_message(self, tenant_id: str, guild_id: str | None) -> Verdict:
        """A message route (`POST /v1/moderate`, `POST /v1/messages`): the tenant's per-key limit,
        then the guild's. A refusal by the guild limit has already spent one of the key's."""
        verdict = await self.check_key(tenant_id)
        if verdict.allowed and guild_id is not None:
            return await self.check_guild(tenant_id, guild_id)
        return verdict

    async def check_key(self, tenant_id: str) -> Verdict:
        """The per-key half of `check_message`: the API checks it before validating the body, so a
        flood is refused at the lowest cost."""
        return await self._check([(item, PER_KEY, ("key", tenant_id)) for item in self.per_key])

    async def check_guild(self, tenant_id: str, guild_id: str) -> Verdict:
        return await self._check([(item, PER_GUILD, ("guild", tenant_id, guild_id)) for item in self.per_guild])

    async def check_other(self, tenant_id: str) -> Verdict:
        """Any other /v1 route: a separate, usually lower, per-key allowance."""
        return await self._check([(item, OTHER, ("other", tenant_id)) for item in self.other])

    async def check_login(self, username: str, client: str) -> Verdict:
        """A sign-in attempt at the review UI: the username's allowance and the client address's
        (one guesser trying many names, many addresses trying one name), each attempt counted."""
        name = username.strip().lower()[:200]
        return await self._check([(item, LOGIN, ("login-user", name)) for item in self.login]
                                 + [(item, LOGIN, ("login-client", client)) for item in self.login])

    async def _check(self, checks: Sequence[Check]) -> Verdict:
        if not checks:
            return _ALLOWED
        now = time.monotonic()
        if self._shared is not None and now >= self._shared_down_until:
            probing = self._shared_down_until != 0.0
            if probing:  # one request probes a store that failed; the others stay local meanwhile
                self._shared_down_until = now + self.RETRY_SHARED_AFTER_S
            try:
                async with asyncio.timeout(2 * self.STORAGE_TIMEOUT_S):
                    verdict = await self._run(self._shared, checks, fallback=False)
            except Exception as exc:  # noqa: BLE001 - any storage failure: count locally, never fail the request
                self._shared_failed(exc)
            else:
                if probing:
                    log.warning("rate-limit store (Redis) answers again; limits are shared again")
                self._shared_down_until = 0.0
                return verdict
        return await self._run(self._local, checks, fallback=self._shared is not None)

    def _shared_failed(self, exc: BaseException) -> None:
        if self._shared_down_until == 0.0:  # log the transition, not every request
            log.warning("rate-limit store (Redis) failed (%s: %s); limits are counted per process, "
                        "Redis is tried again every %.0f s", type(exc).__name__, exc, self.RETRY_SHARED_AFTER_S)
        self._shared_down_until = time.monotonic() + self.RETRY_SHARED_AFTER_S

    async def _run(self, limiter: MovingWindowRateLimiter, checks: Sequence[Check], fallback: bool) -> Verdict:
        if fallback:
            self.fallbacks += 1
        for item, name, ids in checks:
            if not await limiter.hit(item, *ids):
                reset, _ = await limiter.get_window_stats(item, *ids)
                return Verdict(False, name, max(1, math.ceil(reset - time.time())), fallback)
        return Verdict(True, fallback=fallback)

    async def close(self) -> None:
        if self._shared is not None:
            storage = self._shared.storage
            client = getattr(getattr(storage, "bridge", None), "storage", None)
            aclose = getattr(client, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
