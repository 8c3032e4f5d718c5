"""The review thumbnails of a message's images, as image bytes, for the chat service's own tools.

Heron keeps no images: only, for messages that went to review, a small normalised thumbnail per
readable image (`pipeline.images.keeper`, WebP, `HERON_IMAGE_THUMBNAIL_PX` on its longer side).
The review UI shows it inline; these routes hand the same bytes to a script or a moderation
dashboard. Show it blurred by default, as the review UI does: it may be what got the message held.

Two ways in, each with its own isolation:
- by decision (or message) id with the tenant's API key: the tenant's own decisions only;
- by review item id, with the API key or a reviewer's session: only items that reviewer may see
  (a moderator's guilds), answering 404 otherwise, as the rest of the review desk does.

A 404 always says why there is nothing: no such decision or item, no such attachment, or no
thumbnail kept (the image could not be read, or the message was not held for review).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.deps import RuntimeDep, TenantDep
from api.errors import ApiError
from api.review_auth import PrincipalDep
from api.routes.review import ItemId
from pipeline.types import MAX_ATTACHMENTS, Decision, Id

router = APIRouter(tags=["images"])

AttachmentIndex = Annotated[
    int, Path(ge=0, lt=MAX_ATTACHMENTS, description="the attachment's position in the message, from 0")
]
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/webp": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the thumbnail (WebP; JPEG where OpenCV was built without WebP)",
    },
}


def _image(thumb: dict[str, Any], message_id: str, index: int) -> Response:
    """The bytes, never cached by a shared cache and never sniffed into something else."""
    ext = "webp" if thumb["mime"] == "image/webp" else "jpg"
    return Response(
        bytes(thumb["data"]),
        media_type=thumb["mime"],
        headers={
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{message_id}-{index}.{ext}"',
            "Content-Security-Policy": "default-src 'none'",
        },
    )


def _not_kept(decision: Decision | None, index: int) -> ApiError:
    """Why attachment `index` has no thumbnail, as precisely as the decision allows."""
    media = decision.media if decision is not None else []
    if decision is not None and index >= len(media):
        n = len(media)
        return ApiError(404, "attachment_not_found",
                        f"the message has {n} attachment{'' if n == 1 else 's'}; there is no attachment {index}")
    if index < len(media) and media[index].error:
        return ApiError(404, "thumbnail_not_kept",
                        f"attachment {index} could not be read ({media[index].error}); nothing of it was kept")
    now = f"; its decision is now {decision.action.value} (revision {decision.revision})" if decision else ""
    return ApiError(404, "thumbnail_not_kept",
                    f"no thumbnail of attachment {index}: one is kept only when the message is held for review "
                    f"as it is decided{now}")


async def _lookup(rt: Any, tenant_id: str, message_id: str, index: int) -> dict[str, Any] | None:
    thumbs = await run_in_threadpool(rt.store.banks.thumbnails, tenant_id, message_id)
    return next((t for t in thumbs if int(t["attachment"]) == index), None)


@router.get(
    "/v1/decisions/{decision_id}/attachments/{index}/thumbnail",
    response_class=Response,
    responses=IMAGE_RESPONSES,
    summary="The review thumbnail of one attachment (by decision or message id)",
)
async def decision_thumbnail(decision_id: Id, index: AttachmentIndex, tenant: TenantDep, rt: RuntimeDep) -> Response:
    """Kept only for messages that went to review (`hold_for_review`), one per readable image."""
    decision = await run_in_threadpool(rt.store.decisions.get, tenant, decision_id)
    if decision is None:
        raise ApiError(404, "decision_not_found", f"no decision {decision_id!r} for this tenant")
    thumb = await _lookup(rt, tenant, decision.message_id, index)
    if thumb is None:
        raise _not_kept(decision, index)
    return _image(thumb, decision.message_id, index)


@router.get(
    "/v1/review/items/{item_id}/attachments/{index}/thumbnail",
    response_class=Response,
    responses=IMAGE_RESPONSES,
    summary="The thumbnail of one attachment of a review item",
)
async def review_thumbnail(item_id: ItemId, index: AttachmentIndex, principal: PrincipalDep,
                           rt: RuntimeDep) -> Response:
    """What the review UI shows for the item's attachment; the same visibility as the item itself."""
    item = await run_in_threadpool(rt.store.review.get, principal, item_id)  # 404 when not visible
    thumb = await _lookup(rt, item.tenant_id, item.message_id, index)
    if thumb is None:
        # e.g. a report or an appeal brought an allowed message to review: nothing was kept then
        decision = await run_in_threadpool(rt.store.decisions.get, item.tenant_id, item.message_id)
        raise _not_kept(decision, index)
    return _image(thumb, item.message_id, index)
