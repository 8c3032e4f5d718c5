"""Hash banks: per-tenant lists of known-bad media (PDQ hashes), as in Meta's HMA.

Adding content re-checks the image hashes seen in the last `HERON_IMAGE_HASH_RETENTION_DAYS`
days, and revises the decisions of earlier messages that match (delivered by webhook).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import RuntimeDep, TenantDep
from pipeline.errors import InvalidInput
from pipeline.images.retro import recheck_after_add
from pipeline.store.banks import Bank, BankEntry, normalise_entry, parse_csv, to_csv
from pipeline.taxonomy import CATEGORY_NAMES
from pipeline.types import Action

router = APIRouter(prefix="/v1/banks", tags=["banks"])

BankName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
MAX_ENTRIES = 10_000
MAX_CSV_CHARS = 900_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BankCreate(_Body):
    name: BankName
    category: Literal[CATEGORY_NAMES] = Field(description="the taxonomy category matches count toward")  # type: ignore[valid-type]
    action: Action | None = Field(default=None, description="an action every match forces, e.g. block")


class BankPublic(BaseModel):
    name: str
    category: str
    action: str | None
    version: int
    size: int


class EntryIn(_Body):
    hash: Annotated[str, Field(min_length=64, max_length=64, description="PDQ hash, 64 hex characters")]
    label: Annotated[str, Field(max_length=256)] | None = None


class EntriesIn(_Body):
    entries: list[EntryIn] = Field(min_length=1, max_length=MAX_ENTRIES)


class CsvIn(_Body):
    csv: Annotated[str, Field(min_length=1, max_length=MAX_CSV_CHARS)]


class EntryOut(BaseModel):
    hash: str
    label: str | None = None
    quality: int | None = None


class AddResult(BaseModel):
    added: int
    revised: int = Field(description="earlier decisions revised because their images match the new content")


class RemoveIn(_Body):
    hashes: list[Annotated[str, Field(min_length=64, max_length=64)]] = Field(min_length=1, max_length=MAX_ENTRIES)


def _public(b: Bank) -> BankPublic:
    return BankPublic(name=b.name, category=b.category, action=b.action, version=b.version, size=b.size)


@router.post("", response_model=BankPublic, status_code=201, summary="Create a bank")
async def create_bank(body: BankCreate, tenant: TenantDep, rt: RuntimeDep) -> BankPublic:
    action = body.action.value if body.action else None
    bank = await run_in_threadpool(rt.store.banks.create, tenant, body.name, body.category, action, f"tenant:{tenant}")
    return _public(bank)


@router.get("", response_model=list[BankPublic], summary="List the tenant's banks")
async def list_banks(tenant: TenantDep, rt: RuntimeDep) -> list[BankPublic]:
    return [_public(b) for b in await run_in_threadpool(rt.store.banks.list, tenant)]


@router.get("/{name}", response_model=BankPublic)
async def get_bank(name: BankName, tenant: TenantDep, rt: RuntimeDep) -> BankPublic:
    return _public(await run_in_threadpool(rt.store.banks.get, tenant, name))


@router.delete("/{name}", status_code=204, summary="Delete a bank and its content")
async def delete_bank(name: BankName, tenant: TenantDep, rt: RuntimeDep) -> None:
    await run_in_threadpool(rt.store.banks.delete, tenant, name, f"tenant:{tenant}")


async def _add(rt: RuntimeDep, tenant: str, name: str, entries: list[BankEntry]) -> AddResult:
    added = await run_in_threadpool(rt.store.banks.add, tenant, name, entries, f"tenant:{tenant}")
    revised = await run_in_threadpool(recheck_after_add, rt.store, tenant, name, added,
                                      rt.settings.image_hash_retention_days)
    if revised:
        rt.drainer.wake()
    return AddResult(added=len(added), revised=len(revised))


@router.post("/{name}/content", response_model=AddResult, summary="Add PDQ hashes to a bank")
async def add_content(name: BankName, body: EntriesIn, tenant: TenantDep, rt: RuntimeDep) -> AddResult:
    """Hashes are PDQ (64 hex characters), as HMA and ThreatExchange exchange them; hash images
    with `heron banks add NAME FILE...`. Earlier messages whose images match are found again
    (image hashes are kept for `HERON_IMAGE_HASH_RETENTION_DAYS`) and their decisions revised by
    webhook; `revised` says how many."""
    entries = [normalise_entry(e.hash, e.label) for e in body.entries]
    await run_in_threadpool(rt.store.banks.get, tenant, name)
    return await _add(rt, tenant, name, entries)


@router.get("/{name}/content", response_model=list[EntryOut], summary="List a bank's hashes")
async def list_content(
    name: BankName, tenant: TenantDep, rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000, offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[EntryOut]:
    rows = await run_in_threadpool(rt.store.banks.content, tenant, name, limit, offset)
    return [EntryOut(hash=e.hash, label=e.label, quality=e.quality) for e in rows]


@router.post("/{name}/content/remove", summary="Remove hashes from a bank")
async def remove_content(name: BankName, body: RemoveIn, tenant: TenantDep, rt: RuntimeDep) -> dict[str, int]:
    hashes = [normalise_entry(h).hash for h in body.hashes]
    return {"removed": await run_in_threadpool(rt.store.banks.remove, tenant, name, hashes, f"tenant:{tenant}")}


@router.post("/{name}/import", response_model=AddResult, summary="Import hashes from CSV (hash,label)")
async def import_csv(name: BankName, body: CsvIn, tenant: TenantDep, rt: RuntimeDep) -> AddResult:
    entries = parse_csv(body.csv)
    if not entries:
        raise InvalidInput("the CSV holds no hashes", code="invalid_csv")
    await run_in_threadpool(rt.store.banks.get, tenant, name)
    return await _add(rt, tenant, name, entries)


@router.get("/{name}/export", response_class=Response, summary="Export a bank as CSV (signal_type,hash,label)",
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
async def export_csv(name: BankName, tenant: TenantDep, rt: RuntimeDep) -> Response:
    entries = await run_in_threadpool(rt.store.banks.content, tenant, name)
    return Response(to_csv(entries), media_type="text/csv")
