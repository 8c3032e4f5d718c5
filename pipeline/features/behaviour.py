"""Behaviour features: what the author, the channel and the guild have been doing around a message.

Chat spam is mostly behaviour: the same invite in ten channels in ten seconds, twenty fresh
accounts pasting "hi all", a mention flood. This extractor keeps windowed state and fills
`ItemContext.behaviour` with a `BehaviourSnapshot` of named counters (`FEATURE_NAMES`) that the
behaviour scorer reads, plus the spam-wave cluster the message belongs to.

Design rules:

- **The message's own `timestamp` is the clock.** Every window is `[ts - w, ts]` in message
  time, so replaying a recorded log gives the same answers as live traffic did.
- **Idempotent by message id.** The first observation of a message stores its snapshot; a retry,
  a redelivery or a second worker returns that stored snapshot and counts nothing again.
  Warm-up traffic (tenant ``warm-up``) is computed against empty state and never recorded.
- **One algorithm, two backends.** `_STEP_LUA` runs in Redis (atomic per message; a batch of
  messages is one pipeline, so one round trip per batch) and `InProcessBackend.step` is the same
  algorithm over in-process sorted sets for the embedded default. They are tested to give
  identical features on the same stream (tests/unit/test_behaviour_features.py).
- **Near-duplicates** use MinHash over character 3-grams of the normalised text
  (`datasketch`), with LSH banding (8 bands of 4 rows: pairs above ~0.6 Jaccard collide in at
  least one band). Each band is a sorted set per guild; a message's near-duplicates are the
  union of its bands' recent members.
- **Spam waves.** A message with near-duplicates joins the cluster of its earliest
  near-duplicate (or starts one named after it). The cluster record (first and last seen,
  sample text, members, distinct and new authors) lives in the same state for a day and is
  read by `GET /v1/behaviour/clusters/{id}`.

State is scoped by tenant and guild, so two tenants never see each other's counters.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import re
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, Self

import cachetools
import numpy as np

from pipeline.features.context import BehaviourSnapshot, Feature, ScoringItem
from pipeline.features.stage import FeatureExtractor
from pipeline.settings import Settings

log = logging.getLogger(__name__)

WINDOWS_S: tuple[int, ...] = (10, 60, 600)
HORIZON_S = 600  # the longest window: older entries are trimmed
STATE_TTL_S = 900  # Redis expiry of windowed keys (wall clock; the windows themselves are message time)
MEMO_TTL_S = 86_400  # per-message snapshots and cluster records
MAX_SCAN = 1000  # most recent entries read per sorted set (bounds the work on a flooded key)
# Windowed sets are trimmed of entries older than the horizon by one message in TRIM_EVERY (chosen
# by message id, the same in both backends), not by every message: every read is bounded to its
# window, so trimming only bounds memory, and skipping it saves Redis a dozen commands a message.
TRIM_EVERY = 8
# Messages per script call: a batch is one pipeline (one round trip) of calls this size, so
# Redis is never blocked on one script for long (other clients' commands run between calls).
CALL_MESSAGES = 16
NUM_PERM = 32
BANDS = 8
ROWS = NUM_PERM // BANDS
NEW_ACCOUNT_S = 7 * 86_400  # an account younger than this is "new"
NEW_MEMBER_S = 86_400  # joined the guild less than this ago
MASS_MENTIONS = 5
SAMPLE_CHARS = 200
WARM_UP_TENANT = "warm-up"
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)  # datasketch's MinHash constants
_MAX_HASH = np.uint64((1 << 32) - 1)

_USER_MENTION = re.compile(r"<@[!&]?\d{1,25}>")
_EVERYONE = re.compile(r"@(?:everyone|here)\b")
_SHINGLE = 3

# The counters every snapshot carries, in the order the behaviour model reads them.
FEATURE_NAMES: tuple[str, ...] = (
    "author.msgs.10s",
    "author.msgs.60s",
    "author.msgs.600s",
    "author.channels.10s",
    "author.channels.60s",
    "author.channels.600s",
    "author.mentions.60s",
    "author.links.60s",
    "author.dups.600s",
    "author.prior_msgs",
    "channel.msgs.10s",
    "channel.msgs.60s",
    "channel.msgs.600s",
    "channel.authors.60s",
    "guild.msgs.10s",
    "guild.msgs.60s",
    "guild.msgs.600s",
    "guild.new_authors.60s",
    "near.msgs.600s",
    "near.authors.600s",
    "near.channels.600s",
    "cluster.msgs",
    "cluster.authors",
    "cluster.new_authors",
    "msg.mentions",
    "msg.mass_mention",
    "msg.links",
    "msg.invites",
    "msg.chars",
    "msg.first_with_link",
    "account.age_s",
    "account.tenure_s",
    "account.new",
    "account.new_member",
    "author.bot",
)
UNKNOWN_AGE_S = 10 * 365 * 86_400.0  # an author without dates is treated as an old account


@dataclass(frozen=True, slots=True)
class Observation:
    """What the stateful step needs about one message: no text, only ids, counts and hashes."""

    tenant: str
    guild: str
    channel: str
    author: str
    message_id: str
    ts: int  # milliseconds since the epoch: integers, so Lua and Python compare windows exactly
    mentions: int
    links: int
    invites: int
    is_new: bool
    bands: tuple[str, ...]
    sample: str

    @property
    def scope(self) -> str:
        return f"{self.tenant}|{self.guild}"

    @property
    def trims(self) -> bool:
        """Whether this message trims the windowed sets it writes (see `TRIM_EVERY`)."""
        return zlib.crc32(self.message_id.encode("utf-8")) % TRIM_EVERY == 0


# Raw result of the stateful step: the same keys from both backends.
RAW_KEYS: tuple[str, ...] = (
    "a10", "a60", "a600", "ach10", "ach60", "ach600", "amen60", "alink60", "adup600", "aprior",
    "c10", "c60", "c600", "cauth60", "g10", "g60", "g600", "gnew60",
    "nmsgs", "nauth", "nchan", "clmsgs", "clauth", "clnew", "cluster",
)  # fmt: skip


class BehaviourBackend(Protocol):
    """Where the windowed state lives; `step_batch` must process observations in order."""

    name: str

    def step_batch(self, observations: Sequence[Observation]) -> list[dict[str, Any]]: ...

    def cluster(self, tenant: str, cluster_id: str) -> dict[str, Any] | None: ...

    def round_trips(self) -> int: ...

    def close(self) -> None: ...


def cluster_id_for(scope: str, first_message_id: str) -> str:
    """A spam wave is named after its earliest message, so both backends name it the same."""
    return "cl_" + hashlib.sha1(f"{scope}|{first_message_id}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# In-process backend
# --------------------------------------------------------------------------------------------


class _ZSet:
    """A tiny sorted set (member -> score, ordered by (score, member)), as Redis orders one."""

    __slots__ = ("entries", "scores")

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.entries: list[tuple[float, str]] = []

    def add(self, score: float, member: str) -> None:
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return
            i = bisect.bisect_left(self.entries, (old, member))
            del self.entries[i]
        self.scores[member] = score
        bisect.insort(self.entries, (score, member))

    def trim_before(self, score: float) -> None:
        """Drop entries with a score strictly below `score` (ZREMRANGEBYSCORE -inf (score)."""
        i = bisect.bisect_left(self.entries, (score, ""))
        if i:
            for _, m in self.entries[:i]:
                del self.scores[m]
            del self.entries[:i]

    def count(self, low: float, high: float) -> int:
        lo = bisect.bisect_left(self.entries, (low, ""))
        hi = bisect.bisect_right(self.entries, (high, "\U0010ffff"))
        return max(0, hi - lo)

    def recent(self, low: float, high: float, limit: int) -> list[tuple[str, float]]:
        """Up to `limit` entries in [low, high], newest first (ZREVRANGEBYSCORE ... LIMIT 0 n)."""
        lo = bisect.bisect_left(self.entries, (low, ""))
        hi = bisect.bisect_right(self.entries, (high, "\U0010ffff"))
        out = []
        for i in range(hi - 1, max(lo, hi - limit) - 1, -1):
            s, m = self.entries[i]
            out.append((m, s))
        return out

    def last(self) -> float:
        return self.entries[-1][0] if self.entries else -math.inf


class InProcessBackend:
    """The embedded default: the same algorithm as the Lua script, on in-process sorted sets.

    Windowed sets are swept when idle for longer than the horizon (in message time); message
    snapshots and clusters live in TTL caches keyed by message time as well, so memory is bounded
    by the traffic of the last window and a day of snapshots (capped at `max_messages`).
    """

    name = "memory"

    def __init__(self, max_messages: int = 200_000) -> None:
        self._clock = 0.0
        self._zsets: dict[str, _ZSet] = {}
        self._counts: dict[str, int] = {}
        self._seen: cachetools.TTLCache[str, str] = cachetools.TTLCache(max_messages, MEMO_TTL_S, timer=self._now)
        self._msg_cluster: cachetools.TTLCache[str, str] = cachetools.TTLCache(
            max_messages, MEMO_TTL_S, timer=self._now
        )
        self._clusters: cachetools.TTLCache[str, dict[str, Any]] = cachetools.TTLCache(
            max(1000, max_messages // 10), MEMO_TTL_S, timer=self._now
        )
        self._lock = threading.Lock()
        self._steps = 0

    def _now(self) -> float:
        return self._clock / 1000  # message time, in seconds (the TTL caches' unit)

    def round_trips(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def _z(self, key: str) -> _ZSet:
        z = self._zsets.get(key)
        if z is None:
            z = self._zsets[key] = _ZSet()
        return z

    def _sweep(self) -> None:
        cutoff = self._clock - HORIZON_S * 1000
        for key in [k for k, z in self._zsets.items() if z.last() < cutoff]:
            del self._zsets[key]

    def step_batch(self, observations: Sequence[Observation]) -> list[dict[str, Any]]:
        with self._lock:
            return [self._step(o) for o in observations]

    def cluster(self, tenant: str, cluster_id: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self._clusters.get(f"{tenant}|{cluster_id}")
            if rec is None:
                return None
            members = sorted(((s, m) for m, s in rec["members"].scores.items()))
            return _cluster_view(cluster_id, rec["first"], rec["last"], rec["sample"], members,
                                 len(rec["authors"]), len(rec["new"]))  # fmt: skip

    def _step(self, o: Observation) -> dict[str, Any]:
        self._clock = max(self._clock, o.ts)
        self._steps += 1
        if self._steps % 5000 == 0:
            self._sweep()
        seen_key = f"{o.tenant}|{o.message_id}"
        if seen_key in self._seen:
            return json.loads(self._seen[seen_key])  # type: ignore[no-any-return]
        ts, lo = o.ts, o.ts - HORIZON_S * 1000
        sc = o.scope
        trim = o.trims
        r: dict[str, Any] = {}
        # author
        az = self._z(f"a|{sc}|{o.author}")
        az.add(ts, f"{o.message_id}|{o.channel}|{o.mentions}|{o.links}|{o.bands[0] if o.bands else ''}")
        if trim:
            az.trim_before(lo)
        entries = az.recent(lo, ts, MAX_SCAN)
        _author_stats(r, entries, ts, o.bands[0] if o.bands else "")
        count_key = f"n|{sc}|{o.author}"
        self._counts[count_key] = self._counts.get(count_key, 0) + 1
        r["aprior"] = self._counts[count_key] - 1
        # channel
        cz = self._z(f"c|{sc}|{o.channel}")
        cz.add(ts, f"{o.message_id}|{o.author}")
        if trim:
            cz.trim_before(lo)
        for w in WINDOWS_S:
            r[f"c{w}"] = cz.count(ts - w * 1000, ts)
        caz = self._z(f"ca|{sc}|{o.channel}")  # author -> their latest message time in the channel
        if ts > caz.scores.get(o.author, -math.inf):
            caz.add(ts, o.author)
        if trim:
            caz.trim_before(lo)
        r["cauth60"] = caz.count(ts - 60_000, ts)
        # guild
        gz = self._z(f"g|{sc}")
        gz.add(ts, o.message_id)
        if trim:
            gz.trim_before(lo)
        for w in WINDOWS_S:
            r[f"g{w}"] = gz.count(ts - w * 1000, ts)
        nz = self._z(f"gn|{sc}")
        if o.is_new and ts > nz.scores.get(o.author, -math.inf):
            nz.add(ts, o.author)
        if trim:
            nz.trim_before(lo)
        r["gnew60"] = nz.count(ts - 60_000, ts)
        # near-duplicates
        me = f"{o.message_id}|{o.author}|{o.channel}"
        neighbours: dict[str, float] = {}
        for i, band in enumerate(o.bands):
            bz = self._z(f"b|{sc}|{i}|{band}")
            bz.add(ts, me)
            if trim:
                bz.trim_before(lo)
            for m, s in bz.recent(lo, ts, MAX_SCAN):
                if m != me:
                    neighbours[m] = s
        _near_stats(r, neighbours)
        # cluster
        r["cluster"] = ""
        r["clmsgs"] = r["clauth"] = r["clnew"] = 0
        if neighbours:
            earliest, es = min(neighbours.items(), key=lambda kv: (kv[1], kv[0]))
            cid = self._msg_cluster.get(f"{o.tenant}|{earliest.split('|')[0]}")
            founder = cid is None
            if cid is None:
                cid = cluster_id_for(sc, earliest.split("|")[0])
            self._msg_cluster[f"{o.tenant}|{o.message_id}"] = cid
            ckey = f"{o.tenant}|{cid}"
            rec = self._clusters.get(ckey)
            if rec is None:
                rec = {"first": ts, "last": ts, "sample": o.sample, "members": _ZSet(), "authors": set(), "new": set()}
            if founder:  # the wave's first message joins the cluster named after it
                self._msg_cluster[f"{o.tenant}|{earliest.split('|')[0]}"] = cid
                rec["members"].add(es, earliest)
                rec["authors"].add(earliest.split("|")[1])
                rec["first"] = min(rec["first"], es)
            rec["first"] = min(rec["first"], ts)
            rec["last"] = max(rec["last"], ts)
            rec["members"].add(ts, me)
            rec["authors"].add(o.author)
            if o.is_new:
                rec["new"].add(o.author)
            self._clusters[ckey] = rec  # refreshes the TTL
            r["cluster"] = cid
            r["clmsgs"] = len(rec["members"].scores)
            r["clauth"] = len(rec["authors"])
            r["clnew"] = len(rec["new"])
        if o.tenant != WARM_UP_TENANT:
            self._seen[seen_key] = json.dumps(r, sort_keys=True)
        return r


def _author_stats(r: dict[str, Any], entries: list[tuple[str, float]], ts: int, own_hash: str) -> None:
    """Counters from the author's recent entries ("msgid|channel|mentions|links|band0")."""
    for w in WINDOWS_S:
        in_w = [m for m, s in entries if s >= ts - w * 1000]
        r[f"a{w}"] = len(in_w)
        r[f"ach{w}"] = len({m.split("|")[1] for m in in_w})
    men = links = dups = 0
    for m, s in entries:
        parts = m.split("|")
        if s >= ts - 60_000:
            men += int(parts[2])
            links += int(parts[3])
        if own_hash and parts[4] == own_hash:
            dups += 1
    r["amen60"] = men
    r["alink60"] = links
    r["adup600"] = max(0, dups - 1)


def _near_stats(r: dict[str, Any], neighbours: Mapping[str, float]) -> None:
    r["nmsgs"] = len(neighbours)
    r["nauth"] = len({m.split("|")[1] for m in neighbours})
    r["nchan"] = len({m.split("|")[2] for m in neighbours})


def _cluster_view(
    cluster_id: str, first: float, last: float, sample: str, members: list[tuple[float, str]], authors: int, new: int
) -> dict[str, Any]:
    return {
        "id": cluster_id,
        "first_seen": datetime.fromtimestamp(first / 1000, UTC).isoformat(),
        "last_seen": datetime.fromtimestamp(last / 1000, UTC).isoformat(),
        "sample_text": sample,
        "message_count": len(members),
        "author_count": authors,
        "new_author_count": new,
        "members": [
            {"message_id": m.split("|")[0], "author_id": m.split("|")[1], "channel_id": m.split("|")[2],
             "timestamp": datetime.fromtimestamp(s / 1000, UTC).isoformat()}
            for s, m in members
        ],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Redis backend
# --------------------------------------------------------------------------------------------

# KEYS: none (the keys are derived from ARGV, so the script needs one Redis node: no Cluster).
# ARGV: prefix, state_ttl, memo_ttl, horizon, max_scan, the warm-up tenant, then one record per
# message (`RedisBackend._record`): tenant, scope, channel, author, msgid, ts, mentions, links,
# is_new, trim, the band hashes joined by ',', and the sample text (the rest, whatever it holds),
# separated by \x1f (ids cannot contain it: see `pipeline.types.Id`). One call handles several
# messages in order, each atomically with the next (the call is atomic as a whole), and returns
# one JSON string per message. Why records, not an argument per value: packing ~25 arguments a
# message was a fifth of the client's time.
_STEP_LUA = """
local p = ARGV[1]
local ttl, memo = tonumber(ARGV[2]), tonumber(ARGV[3])
local horizon, maxscan = tonumber(ARGV[4]) * 1000, tonumber(ARGV[5])
local warm = ARGV[6]
local SEP = '\\31'  -- Lua's decimal escape: the unit separator (0x1f)
local wins = {10, 60, 600}
-- the first fields of a '|'-separated member, as Python's split('|') gives them (one C call
-- each, no table: the per-entry parsing was most of the script's own time)
local F3 = '^([^|]*)|([^|]*)|([^|]*)'
local F5 = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)'
-- EXPIRE a key once per call: a guild's or channel's keys are touched by most of the call's
-- messages, and the call lasts milliseconds against a 900 s expiry. Only a key that exists
-- is remembered (EXPIRE returns 1), so a key created later in the call still gets its expiry.
local expired = {}
local function expire(key, secs)
  if not expired[key] and redis.call('EXPIRE', key, secs) == 1 then expired[key] = true end
end
local function zput(key, member, ts, lo, trim)
  redis.call('ZADD', key, ts, member)
  if trim then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. lo) end
  expire(key, ttl)
end
local function recent(key, ts, low)
  return redis.call('ZREVRANGEBYSCORE', key, ts, low, 'WITHSCORES', 'LIMIT', 0, maxscan)
end

local function step(rec)
  local a, start = {}, 1
  for _ = 1, 11 do
    local i = string.find(rec, SEP, start, true)
    a[#a + 1] = string.sub(rec, start, i - 1)
    start = i + 1
  end
  local tenant, sc, chan, author, mid, tsraw = a[1], a[2], a[3], a[4], a[5], a[6]
  local ts = tonumber(tsraw)
  local mentions, links, isnew, trim = a[7], a[8], a[9] == '1', a[10] == '1'
  local bands = {}
  for b in string.gmatch(a[11], '[^,]+') do bands[#bands + 1] = b end
  local sample = string.sub(rec, start)
  local record = tenant ~= warm
  local seen = p .. 's|' .. tenant .. '|' .. mid
  local prev = redis.call('GET', seen)
  if prev then return prev end
  local lo = ts - horizon
  local r = {}
  -- author
  local band0 = bands[1] or ''
  local akey = p .. 'a|' .. sc .. '|' .. author
  zput(akey, mid .. '|' .. chan .. '|' .. mentions .. '|' .. links .. '|' .. band0, ts, lo, trim)
  local ae = recent(akey, ts, lo)
  -- one pass over the author's entries (all within the 600 s horizon) for every window
  local t10, t60 = ts - 10000, ts - 60000
  local n10, n60, n600, c10, c60, c600 = 0, 0, 0, 0, 0, 0
  local s10, s60, s600 = {}, {}, {}
  local men, lk, dups = 0, 0, 0
  for i = 1, #ae, 2 do
    local _, c, em, el, eb = string.match(ae[i], F5)
    local s = tonumber(ae[i + 1])
    n600 = n600 + 1
    if not s600[c] then s600[c] = true; c600 = c600 + 1 end
    if s >= t60 then
      n60 = n60 + 1
      if not s60[c] then s60[c] = true; c60 = c60 + 1 end
      men = men + tonumber(em); lk = lk + tonumber(el)
      if s >= t10 then
        n10 = n10 + 1
        if not s10[c] then s10[c] = true; c10 = c10 + 1 end
      end
    end
    if band0 ~= '' and eb == band0 then dups = dups + 1 end
  end
  r['a10'], r['a60'], r['a600'] = n10, n60, n600
  r['ach10'], r['ach60'], r['ach600'] = c10, c60, c600
  r['amen60'] = men
  r['alink60'] = lk
  r['adup600'] = math.max(0, dups - 1)
  local nkey = p .. 'n|' .. sc .. '|' .. author
  r['aprior'] = redis.call('INCR', nkey) - 1
  expire(nkey, memo)
  -- channel
  local ckey = p .. 'c|' .. sc .. '|' .. chan
  zput(ckey, mid .. '|' .. author, ts, lo, trim)
  for _, w in ipairs(wins) do r['c' .. w] = redis.call('ZCOUNT', ckey, ts - w * 1000, ts) end
  local cakey = p .. 'ca|' .. sc .. '|' .. chan
  redis.call('ZADD', cakey, 'GT', ts, author)
  if trim then redis.call('ZREMRANGEBYSCORE', cakey, '-inf', '(' .. lo) end
  expire(cakey, ttl)
  r['cauth60'] = redis.call('ZCOUNT', cakey, ts - 60000, ts)
  -- guild
  local gkey = p .. 'g|' .. sc
  zput(gkey, mid, ts, lo, trim)
  for _, w in ipairs(wins) do r['g' .. w] = redis.call('ZCOUNT', gkey, ts - w * 1000, ts) end
  local gnkey = p .. 'gn|' .. sc
  if isnew then redis.call('ZADD', gnkey, 'GT', ts, author) end
  if trim then redis.call('ZREMRANGEBYSCORE', gnkey, '-inf', '(' .. lo) end
  expire(gnkey, ttl)
  r['gnew60'] = redis.call('ZCOUNT', gnkey, ts - 60000, ts)
  -- near-duplicates
  local me = mid .. '|' .. author .. '|' .. chan
  local nb, nbn = {}, 0
  for i, band in ipairs(bands) do
    local bkey = p .. 'b|' .. sc .. '|' .. (i - 1) .. '|' .. band
    zput(bkey, me, ts, lo, trim)
    local be = recent(bkey, ts, lo)
    for j = 1, #be, 2 do
      if be[j] ~= me and not nb[be[j]] then nb[be[j]] = tonumber(be[j + 1]); nbn = nbn + 1 end
    end
  end
  local na, nna, nc, nnc = {}, 0, {}, 0
  local earliest, es = nil, nil
  for m, s in pairs(nb) do
    local _, au, ch = string.match(m, F3)
    if not na[au] then na[au] = true; nna = nna + 1 end
    if not nc[ch] then nc[ch] = true; nnc = nnc + 1 end
    if (not earliest) or s < es or (s == es and m < earliest) then earliest, es = m, s end
  end
  r['nmsgs'] = nbn
  r['nauth'] = nna
  r['nchan'] = nnc
  r['cluster'] = ''
  r['clmsgs'] = 0
  r['clauth'] = 0
  r['clnew'] = 0
  if earliest then
    local emid, eauthor = string.match(earliest, F3)
    local cid = redis.call('GET', p .. 'mc|' .. tenant .. '|' .. emid)
    local founder = not cid
    if founder then cid = 'cl_' .. string.sub(redis.sha1hex(sc .. '|' .. emid), 1, 16) end
    redis.call('SET', p .. 'mc|' .. tenant .. '|' .. mid, cid, 'EX', memo)
    local ck = p .. 'cl|' .. tenant .. '|' .. cid
    if founder then
      redis.call('SET', p .. 'mc|' .. tenant .. '|' .. emid, cid, 'EX', memo)
      redis.call('ZADD', ck .. '|m', es, earliest)
      redis.call('SADD', ck .. '|a', eauthor)
      local f0 = redis.call('HGET', ck, 'first')
      if (not f0) or tonumber(f0) > es then redis.call('HSET', ck, 'first', string.format('%d', es)) end
    end
    local first = redis.call('HGET', ck, 'first')
    if (not first) or tonumber(first) > ts then redis.call('HSET', ck, 'first', tsraw) end
    local last = redis.call('HGET', ck, 'last')
    if (not last) or tonumber(last) < ts then redis.call('HSET', ck, 'last', tsraw) end
    redis.call('HSETNX', ck, 'sample', sample)
    redis.call('ZADD', ck .. '|m', ts, me)
    redis.call('SADD', ck .. '|a', author)
    if isnew then redis.call('SADD', ck .. '|n', author) end
    for _, k in ipairs({ck, ck .. '|m', ck .. '|a', ck .. '|n'}) do expire(k, memo) end
    r['cluster'] = cid
    r['clmsgs'] = redis.call('ZCARD', ck .. '|m')
    r['clauth'] = redis.call('SCARD', ck .. '|a')
    r['clnew'] = redis.call('SCARD', ck .. '|n')
  end
  local out = cjson.encode(r)
  if record then redis.call('SET', seen, out, 'EX', memo) end
  return out
end
local outs = {}
for i = 7, #ARGV do outs[#outs + 1] = step(ARGV[i]) end
return outs
"""


class RedisBackend:
    """Windowed state in Redis: one Lua call per CALL_MESSAGES messages (atomic), one pipeline per batch."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "heron:bhv:") -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = prefix
        self.script = self.client.register_script(_STEP_LUA)
        self._round_trips = 0
        self._lock = threading.Lock()

    def round_trips(self) -> int:
        return self._round_trips

    def close(self) -> None:
        self.client.close()

    def step_batch(self, observations: Sequence[Observation]) -> list[dict[str, Any]]:
        if not observations:
            return []
        import redis

        head = [self.prefix, str(STATE_TTL_S), str(MEMO_TTL_S), str(HORIZON_S), str(MAX_SCAN), WARM_UP_TENANT]
        records = [self._record(o) for o in observations]
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for i in range(0, len(records), CALL_MESSAGES):
                pipe.evalsha(self.script.sha, 0, *head, *records[i : i + CALL_MESSAGES])
            with self._lock:
                self._round_trips += 1
            try:
                results = pipe.execute()
                break
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self.script.sha = self.client.script_load(_STEP_LUA)  # a restarted Redis lost it
                with self._lock:
                    self._round_trips += 1
        return [_decode(json.loads(r)) for call in results for r in call]

    @staticmethod
    def _record(o: Observation) -> str:
        """One message's fields for the script, \x1f-separated, the sample text last (see _STEP_LUA)."""
        return "\x1f".join((
            o.tenant, o.scope, o.channel, o.author, o.message_id, str(o.ts), str(o.mentions), str(o.links),
            "1" if o.is_new else "0", "1" if o.trims else "0", ",".join(o.bands), o.sample,
        ))  # fmt: skip

    def cluster(self, tenant: str, cluster_id: str) -> dict[str, Any] | None:
        ck = f"{self.prefix}cl|{tenant}|{cluster_id}"
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(ck)
        pipe.zrange(ck + "|m", 0, -1, withscores=True)
        pipe.scard(ck + "|a")
        pipe.scard(ck + "|n")
        rec, members, authors, new = pipe.execute()
        if not rec:
            return None
        return _cluster_view(
            cluster_id, float(rec[b"first"]), float(rec[b"last"]), rec[b"sample"].decode(),
            [(s, m.decode()) for m, s in members], int(authors), int(new),
        )  # fmt: skip


def _decode(r: dict[str, Any]) -> dict[str, Any]:
    """cjson encodes an empty table as {} and integers as numbers: normalise to the Python shape."""
    return {k: (v if k == "cluster" else int(v)) for k, v in r.items()}


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------


class _MinHasher:
    """MinHash band keys of a text: datasketch's MinHash (its permutations, its arithmetic), computed
    in one NumPy expression per text instead of through a MinHash object per message, which was
    most of the extractor's own time. `tests/unit/test_behaviour_features.py` checks the signatures
    against datasketch's."""

    def __init__(self) -> None:
        from datasketch import MinHash

        self._a, self._b = (p.reshape(1, -1) for p in MinHash(num_perm=NUM_PERM, seed=1).permutations)

    def signature(self, text: str) -> np.ndarray | None:
        """The MinHash signature of the text's character 3-grams (None for a blank text)."""
        text = " ".join(text.lower().split())
        if not text:
            return None
        padded = f" {text} "
        grams = {padded[i : i + _SHINGLE] for i in range(max(1, len(padded) - _SHINGLE + 1))}
        # crc32 (C, 32-bit) instead of datasketch's default SHA-1 per shingle: the band keys only
        # need to be equal for equal signatures.
        hv = np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams))
        phv = np.bitwise_and((hv.reshape(-1, 1) * self._a + self._b) % _MERSENNE_PRIME, _MAX_HASH)
        return np.asarray(phv.min(axis=0), dtype=np.uint64)

    def bands(self, text: str) -> tuple[str, ...]:
        hv = self.signature(text)
        if hv is None:
            return ()
        return tuple(
            hashlib.blake2b(hv[b * ROWS : (b + 1) * ROWS].tobytes(), digest_size=6).hexdigest() for b in range(BANDS)
        )


def _seconds(ts: datetime, then: datetime | None) -> float:
    if then is None:
        return UNKNOWN_AGE_S
    if then.tzinfo is None and ts.tzinfo is not None:
        then = then.replace(tzinfo=ts.tzinfo)
    elif ts.tzinfo is None and then.tzinfo is not None:
        ts = ts.replace(tzinfo=then.tzinfo)
    return max(0.0, (ts - then).total_seconds())


def _epoch_ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def count_mentions(text: str) -> tuple[int, bool]:
    """(user and role mentions + @everyone/@here, whether it is a mass mention)."""
    users = len(_USER_MENTION.findall(text))
    everyone = len(_EVERYONE.findall(text))
    return users + everyone, everyone > 0 or users >= MASS_MENTIONS


class BehaviourExtractor(FeatureExtractor):
    """Fills `ItemContext.behaviour` from windowed state (Redis when configured, else in-process)."""

    name: ClassVar[str] = "behaviour"
    provides: ClassVar[frozenset[Feature]] = frozenset({Feature.BEHAVIOUR})
    requires: ClassVar[frozenset[Feature]] = frozenset({Feature.TEXT, Feature.LINKS})
    inline: ClassVar[bool] = False

    def __init__(self, backend: BehaviourBackend | None = None) -> None:
        self.backend: BehaviourBackend = backend or InProcessBackend()
        # In-process counting is a few hundred microseconds of pure Python: fine on the event
        # loop. Redis is network I/O: the async path runs it on a thread.
        self.inline = self.backend.name == "memory"  # type: ignore[misc]
        self._hasher = _MinHasher()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        mode = settings.behaviour_backend
        if mode == "redis" or (mode == "auto" and settings.redis_url):
            if not settings.redis_url:
                raise ValueError("HERON_BEHAVIOUR_BACKEND=redis needs HERON_REDIS_URL")
            return cls(RedisBackend(settings.redis_url))
        return cls(InProcessBackend())

    def observe(self, item: ScoringItem) -> tuple[Observation, dict[str, float]]:
        """The stateless half: ids, counts, hashes and the per-message features."""
        m = item.message
        text = m.text
        mentions, mass = count_mentions(text)
        links = item.context.links
        invites = sum(1 for link in links if link.invite)
        age = _seconds(m.timestamp, m.author.created_at)
        tenure = _seconds(m.timestamp, m.author.joined_at)
        is_new = age < NEW_ACCOUNT_S or tenure < NEW_MEMBER_S
        norm = item.context.normalized_text if item.context.normalized_text is not None else item.normalized_text
        obs = Observation(
            tenant=item.tenant_id,
            guild=m.guild_id or "-",
            channel=m.channel_id or "-",
            author=m.author.id,
            message_id=m.id,
            ts=_epoch_ms(m.timestamp),
            mentions=mentions,
            links=len(links),
            invites=invites,
            is_new=is_new,
            bands=self._hasher.bands(norm or text),
            sample=text[:SAMPLE_CHARS],
        )
        own = {
            "msg.mentions": float(mentions),
            "msg.mass_mention": float(mass),
            "msg.links": float(len(links)),
            "msg.invites": float(invites),
            "msg.chars": float(len(text)),
            "account.age_s": age,
            "account.tenure_s": tenure,
            "account.new": float(age < NEW_ACCOUNT_S),
            "account.new_member": float(tenure < NEW_MEMBER_S),
            "author.bot": float(m.author.bot),
        }
        return obs, own

    def extract(self, items: Sequence[ScoringItem]) -> None:
        observed = [self.observe(it) for it in items]
        live = [i for i, it in enumerate(items) if it.tenant_id != WARM_UP_TENANT]
        raws: list[dict[str, Any]] = [{}] * len(items)
        for i, raw in zip(live, self.backend.step_batch([observed[i][0] for i in live]), strict=True):
            raws[i] = raw
        if len(live) < len(items):  # warm-up traffic: computed on throwaway state, never recorded
            scratch = InProcessBackend(max_messages=1000)
            for i, it in enumerate(items):
                if it.tenant_id == WARM_UP_TENANT:
                    raws[i] = scratch.step_batch([observed[i][0]])[0]
        for it, (_, own), raw in zip(items, observed, raws, strict=True):
            it.context.behaviour = snapshot(raw, own)

    def cluster(self, tenant: str, cluster_id: str) -> dict[str, Any] | None:
        return self.backend.cluster(tenant, cluster_id)

    def close(self) -> None:
        self.backend.close()


def snapshot(raw: Mapping[str, Any], own: Mapping[str, float]) -> BehaviourSnapshot:
    """Raw backend counts + per-message features -> the named counters scorers read."""
    c: dict[str, float] = dict(own)
    names = {
        "a10": "author.msgs.10s", "a60": "author.msgs.60s", "a600": "author.msgs.600s",
        "ach10": "author.channels.10s", "ach60": "author.channels.60s", "ach600": "author.channels.600s",
        "amen60": "author.mentions.60s", "alink60": "author.links.60s", "adup600": "author.dups.600s",
        "aprior": "author.prior_msgs", "c10": "channel.msgs.10s", "c60": "channel.msgs.60s",
        "c600": "channel.msgs.600s", "cauth60": "channel.authors.60s", "g10": "guild.msgs.10s",
        "g60": "guild.msgs.60s", "g600": "guild.msgs.600s", "gnew60": "guild.new_authors.60s",
        "nmsgs": "near.msgs.600s", "nauth": "near.authors.600s", "nchan": "near.channels.600s",
        "clmsgs": "cluster.msgs", "clauth": "cluster.authors", "clnew": "cluster.new_authors",
    }  # fmt: skip
    for k, name in names.items():
        c[name] = float(raw[k])
    c["msg.first_with_link"] = float(raw["aprior"] == 0 and own["msg.links"] > 0)
    ordered = {name: c[name] for name in FEATURE_NAMES}
    return BehaviourSnapshot(
        counters=MappingProxyType(ordered),
        near_duplicates=int(raw["nmsgs"]),
        cluster_id=raw["cluster"] or None,
    )


def find_extractor(stage: Any) -> BehaviourExtractor | None:
    """The behaviour extractor of a feature stage, if it has one (for the cluster route)."""
    for e in getattr(stage, "extractors", ()):
        if isinstance(e, BehaviourExtractor):
            return e
    return None
