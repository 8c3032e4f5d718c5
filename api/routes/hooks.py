"""The hook service: webhook registration, delivery status, dead letters and redelivery."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import RuntimeDep, TenantDep
from api.errors import ApiError
from api.schemas import DeliveryPublic, WebhookCreate, WebhookPublic
from pipeline.errors import InvalidInput
from pipeline.netguard import UnsafeURLError, check_url
from pipeline.store import Delivery

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"])


def _delivery(d: Delivery) -> DeliveryPublic:
    return DeliveryPublic(
        decision_id=d.decision_id,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at.isoformat(),
        last_error=d.last_error,
        last_status_code=d.last_status_code,
    )


@router.put("", response_model=WebhookPublic, summary="Register the webhook (returns the signing secret once)")
async def put_webhook(body: WebhookCreate, tenant: TenantDep, rt: RuntimeDep) -> WebhookPublic:
    """The URL must resolve to public addresses only (no loopback, private, link-local or cloud
    metadata address) unless HERON_ALLOW_PRIVATE_WEBHOOKS is set. Deliveries check again at
    connect time (the sink's `pipeline.netguard.safe_transport`), so a DNS answer that changes
    later is refused too."""
    url = str(body.url)
    try:
        # getaddrinfo blocks: run it in a thread, not on the event loop.
        await run_in_threadpool(check_url, url, allow_private=rt.settings.allow_private_webhooks)
    except UnsafeURLError as exc:
        raise InvalidInput(f"the webhook URL is refused: {exc.reason}", code="unsafe_webhook_url") from None
    hook = await run_in_threadpool(rt.store.set_webhook, tenant, url, f"tenant:{tenant}")
    return WebhookPublic(url=hook.url, secret=hook.secret)


@router.get("", response_model=WebhookPublic)
async def get_webhook(tenant: TenantDep, rt: RuntimeDep) -> WebhookPublic:
    hook = await run_in_threadpool(rt.store.get_webhook, tenant)
    if hook is None:
        raise ApiError(404, "webhook_not_found", "no webhook registered; PUT /v1/webhook")
    return WebhookPublic(url=hook.url)


@router.delete("", status_code=204)
async def delete_webhook(tenant: TenantDep, rt: RuntimeDep) -> None:
    if not await run_in_threadpool(rt.store.delete_webhook, tenant):
        raise ApiError(404, "webhook_not_found", "no webhook registered")


@router.get(
    "/deliveries", response_model=list[DeliveryPublic], summary="Deliveries; status=dead is the dead-letter list"
)
async def deliveries(
    tenant: TenantDep,
    rt: RuntimeDep,
    status: Literal["pending", "delivered", "dead"] | None = Query(default=None),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[DeliveryPublic]:
    rows = await run_in_threadpool(rt.store.deliveries, tenant, status, limit)
    return [_delivery(d) for d in rows]


@router.post(
    "/deliveries/{decision_id}/redeliver",
    response_model=DeliveryPublic,
    status_code=202,
    summary="Send a decision again (dead-lettered or not)",
)
async def redeliver(decision_id: str, tenant: TenantDep, rt: RuntimeDep) -> DeliveryPublic:
    if await run_in_threadpool(rt.store.get_webhook, tenant) is None:
        raise ApiError(409, "webhook_not_found", "register a webhook before redelivering")
    d = await run_in_threadpool(rt.store.redeliver, tenant, decision_id, f"tenant:{tenant}")
    if d is None:
        raise ApiError(404, "decision_not_found", f"no decision {decision_id!r} for this tenant")
    await run_in_threadpool(rt.sink.deliver_due)
    refreshed = [
        x for x in await run_in_threadpool(rt.store.deliveries, tenant, None, 1000) if x.decision_id == decision_id
    ]
    return _delivery(refreshed[0] if refreshed else d)
