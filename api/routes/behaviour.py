"""Spam waves (behaviour clusters): read one cluster so review and bulk action can act on all of it.

A decision whose behaviour reason names a spam wave (``spam wave cl_...``) points here. The
cluster lives in the behaviour state (Redis when configured, else this process) for a day after
its last message.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.deps import RuntimeDep, TenantDep
from api.errors import ApiError
from pipeline.features.behaviour import find_extractor

router = APIRouter(prefix="/v1/behaviour", tags=["behaviour"])


class ClusterMember(BaseModel):
    message_id: str
    author_id: str
    channel_id: str
    timestamp: str


class Cluster(BaseModel):
    """Near-identical messages from one guild within a short window (a raid or spam wave)."""

    id: str
    first_seen: str
    last_seen: str
    sample_text: str
    message_count: int
    author_count: int
    new_author_count: int
    members: list[ClusterMember]


@router.get("/clusters/{cluster_id}", response_model=Cluster, summary="A spam wave: its members, sample and times")
async def get_cluster(
    tenant: TenantDep,
    rt: RuntimeDep,
    cluster_id: Annotated[str, Path(pattern=r"^cl_[0-9a-f]{16}$", description="as named in a decision's reason")],
) -> Cluster:
    extractor = find_extractor(rt.service.features)
    if extractor is None:
        raise ApiError(404, "cluster_not_found", "behaviour features are not enabled (no 'behaviour' scorer)")
    found = await run_in_threadpool(extractor.cluster, tenant, cluster_id)
    if found is None:
        raise ApiError(404, "cluster_not_found", f"no spam wave {cluster_id!r} for this tenant (or it expired)")
    return Cluster.model_validate(found)
