"""The hook service: webhook registration, delivery status, dead letters and redelivery."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import RuntimeDep, TenantDep
from api.errors import ApiError
from api.schemas import AttemptPublic, DeliveryDetail, DeliveryPublic, WebhookCreate, WebhookPublic
from pipeline.errors import InvalidInput
from pipeline.netguard import UnsafeURLError, check_url
from pipeline.store import OutboxEvent

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"])


def _iso(ts: object) -> str | None:
    return ts.isoformat() if ts is not None else None  # type: ignore[attr-defined]


def _delivery(d: OutboxEvent) -> DeliveryPublic:
    return DeliveryPublic(
        decision_id=d.decision_id,
        message_id=d.message_id,
        revision=d.revision,
        event_id=d.event_id,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=_iso(d.next_attempt_at),
        last_error=d.last_error,
        last_status_code=d.last_status_code,
        created_at=_iso(d.created_at) or "",
        delivered_at=_iso(d.delivered_at),
        dead_at=_iso(d.dead_at),
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
    hook = await run_in_threadpool(rt.store.webhooks.set, tenant, url, f"tenant:{tenant}")
    return WebhookPublic(url=hook.url, secret=hook.secret)


@router.get("", response_model=WebhookPublic)
async def get_webhook(tenant: TenantDep, rt: RuntimeDep) -> WebhookPublic:
    hook = await run_in_threadpool(rt.store.webhooks.get, tenant)
    if hook is None:
        raise ApiError(404, "webhook_not_found", "no webhook registered; PUT /v1/webhook")
    return WebhookPublic(url=hook.url)


@router.delete("", status_code=204)
async def delete_webhook(tenant: TenantDep, rt: RuntimeDep) -> None:
    if not await run_in_threadpool(rt.store.webhooks.delete, tenant, f"tenant:{tenant}"):
        raise ApiError(404, "webhook_not_found", "no webhook registered")


@router.get(
    "/deliveries", response_model=list[DeliveryPublic],
    summary="Webhook events, newest first; status=dead is the dead-letter list",
)
async def deliveries(
    tenant: TenantDep,
    rt: RuntimeDep,
    status: Literal["pending", "delivered", "dead"] | None = Query(default=None),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[DeliveryPublic]:
    rows = await run_in_threadpool(lambda: rt.store.outbox.list(tenant, sink="webhook", status=status, limit=limit))
    return [_delivery(d) for d in rows]


@router.get(
    "/deliveries/{decision_id}", response_model=list[DeliveryDetail],
    summary="Every webhook event of one decision (one per revision) with its full attempt history",
)
async def delivery_history(decision_id: str, tenant: TenantDep, rt: RuntimeDep) -> list[DeliveryDetail]:
    events = await run_in_threadpool(rt.store.outbox.for_decision, tenant, decision_id)
    if not events:
        raise ApiError(404, "delivery_not_found", f"no webhook event for decision {decision_id!r}")
    out = []
    for e in events:
        attempts = await run_in_threadpool(rt.store.outbox.attempts, e.id)
        out.append(DeliveryDetail(
            **_delivery(e).model_dump(),
            history=[AttemptPublic(attempt=a.attempt, at=a.at.isoformat(), ok=a.ok, status_code=a.status_code,
                                   error=a.error, duration_ms=a.duration_ms) for a in attempts],
        ))
    return out


@router.post(
    "/deliveries/{decision_id}/redeliver",
    response_model=DeliveryPublic,
    status_code=202,
    summary="Send a decision's current revision again (dead-lettered or not); the attempt history is kept",
)
async def redeliver(decision_id: str, tenant: TenantDep, rt: RuntimeDep) -> DeliveryPublic:
    if await run_in_threadpool(rt.store.webhooks.get, tenant) is None:
        raise ApiError(409, "webhook_not_found", "register a webhook before redelivering")
    event = await run_in_threadpool(
        lambda: rt.store.outbox.redeliver(tenant, decision_id, sink="webhook", actor=f"tenant:{tenant}")
    )
    if event is None:
        raise ApiError(404, "decision_not_found", f"no decision {decision_id!r} for this tenant")
    rt.drainer.wake()
    return _delivery(event)
