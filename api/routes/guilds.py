"""Guild registration, versioned policies and word lists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import RuntimeDep, TenantDep
from api.schemas import BlockedLinksChange, GuildCreate, GuildPublic, ListsBody
from pipeline.errors import InvalidInput, NotFound
from pipeline.policy import PLATFORM_DEFAULT, GuildPolicy
from pipeline.types import Id

router = APIRouter(prefix="/v1/guilds", tags=["guilds"])


def _validate_lists(lists: ListsBody) -> dict[str, Any]:
    """Refuse lists the rules scorer could not run safely (bad regexes, empty or oversized terms)."""
    from pipeline.guilds import lists_from_json
    from pipeline.scorers.rules import validate_lists

    body = lists.model_dump()
    try:
        validate_lists(lists_from_json(body))
    except ValueError as exc:
        code = "invalid_regex" if "regex" in str(exc) else "invalid_list"
        raise InvalidInput(str(exc), code=code) from None
    return body


async def _upsert(rt: RuntimeDep, tenant: str, guild_id: str, **changes: Any) -> None:
    """A new policy/lists version (the store settles concurrent writers: 409 concurrent_update)."""
    await run_in_threadpool(lambda: rt.store.guilds.upsert(tenant, guild_id, actor=f"tenant:{tenant}", **changes))


def _public(row: dict[str, Any]) -> GuildPublic:
    return GuildPublic(
        guild_id=row["guild_id"],
        policy=row["policy"] or PLATFORM_DEFAULT.model_dump(mode="json"),
        policy_version=row["policy_version"],
        uses_platform_default=row["policy"] is None,
        lists=row["lists"] or {},
        lists_version=row["lists_version"],
    )


@router.put("/{guild_id}", response_model=GuildPublic, summary="Register a guild (optionally with policy and lists)")
async def put_guild(guild_id: Id, body: GuildCreate, tenant: TenantDep, rt: RuntimeDep) -> GuildPublic:
    lists = _validate_lists(body.lists) if body.lists is not None else None
    await _upsert(rt, tenant, guild_id, policy=body.policy, lists=lists)
    row = await run_in_threadpool(rt.store.guilds.row, tenant, guild_id)
    assert row is not None
    return _public(row)


async def _existing(rt: RuntimeDep, tenant: str, guild_id: str) -> dict[str, Any]:
    row = await run_in_threadpool(rt.store.guilds.row, tenant, guild_id)
    if row is None:
        raise NotFound(f"guild {guild_id!r} is not registered", code="unknown_guild")
    return row


@router.get("/{guild_id}", response_model=GuildPublic)
async def get_guild(guild_id: Id, tenant: TenantDep, rt: RuntimeDep) -> GuildPublic:
    return _public(await _existing(rt, tenant, guild_id))


@router.put("/{guild_id}/policy", response_model=GuildPublic, summary="Replace the guild's policy (new version)")
async def put_policy(guild_id: Id, body: GuildPolicy, tenant: TenantDep, rt: RuntimeDep) -> GuildPublic:
    await _existing(rt, tenant, guild_id)
    await _upsert(rt, tenant, guild_id, policy=body)
    return _public(await _existing(rt, tenant, guild_id))


@router.put("/{guild_id}/lists", response_model=GuildPublic, summary="Replace the guild's word and link lists")
async def put_lists(guild_id: Id, body: ListsBody, tenant: TenantDep, rt: RuntimeDep) -> GuildPublic:
    await _existing(rt, tenant, guild_id)
    lists = _validate_lists(body)
    await _upsert(rt, tenant, guild_id, lists=lists)
    return _public(await _existing(rt, tenant, guild_id))


@router.post(
    "/{guild_id}/lists/blocked_links",
    response_model=GuildPublic,
    summary="Add and remove blocked links (one new lists version; other lists unchanged)",
)
async def change_blocked_links(
    guild_id: Id, body: BlockedLinksChange, tenant: TenantDep, rt: RuntimeDep
) -> GuildPublic:
    """Entries are normalised (scheme, port, query dropped; host in lower-case punycode) and must
    name a real public suffix (422 `invalid_link_entry`); removing an entry the guild does not
    have is 404 `unknown_link_entry`. Runs inside the guild's write transaction, so concurrent
    changes are never lost."""
    from api.schemas import MAX_BLOCKED_LINKS
    from pipeline.scorers.links import normalize_link_entry

    await _existing(rt, tenant, guild_id)
    try:
        add = [normalize_link_entry(e) for e in body.add]
        remove = {normalize_link_entry(e) for e in body.remove}
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_link_entry") from None

    def change(current: dict[str, Any] | None) -> dict[str, Any]:
        lists = dict(current or {})
        entries = list(lists.get("blocked_links") or [])
        have = {normalize_link_entry(e) if _valid(e) else e for e in entries}
        missing = sorted(remove - have)
        if missing:
            raise NotFound(f"not in the guild's blocked links: {', '.join(missing)}", code="unknown_link_entry")
        kept = [e for e in entries if (normalize_link_entry(e) if _valid(e) else e) not in remove]
        known = {normalize_link_entry(e) if _valid(e) else e for e in kept}
        kept += [e for e in dict.fromkeys(add) if e not in known]
        if len(kept) > MAX_BLOCKED_LINKS:
            raise InvalidInput(f"a guild may block at most {MAX_BLOCKED_LINKS} links", code="invalid_list")
        lists["blocked_links"] = kept
        return lists

    await _upsert(rt, tenant, guild_id, lists=change)
    return _public(await _existing(rt, tenant, guild_id))


def _valid(entry: str) -> bool:
    """Whether an already stored entry normalises (lists set before validation may hold odd ones)."""
    from pipeline.scorers.links import normalize_link_entry

    try:
        normalize_link_entry(entry)
    except ValueError:
        return False
    return True


@router.get("/{guild_id}/history", summary="Every policy and list version of the guild")
async def history(guild_id: Id, tenant: TenantDep, rt: RuntimeDep) -> list[dict[str, Any]]:
    await _existing(rt, tenant, guild_id)
    rows = await run_in_threadpool(rt.store.guilds.history, tenant, guild_id)
    return [
        {"kind": r["kind"], "version": r["version"], "body": r["body"], "created_at": str(r["created_at"])}
        for r in rows
    ]
