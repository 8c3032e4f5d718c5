"""The Synapse module: a pre-send check through Heron's sync endpoint, and a webhook resource
that applies Heron's later decisions (redactions, power-level mutes).

Everything that waits on the network runs on the module's own asyncio thread (bridge.py); the
reactor only awaits Deferreds. Synapse's own state reads (room state, user info) go through the
module API, which is asynchronous too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from heron_client import (
    AsyncHeronClient,
    Attachment,
    Author,
    Context,
    HeronAPIError,
    HeronUnavailable,
    Message,
    RetryPolicy,
    WebhookEvent,
    WebhookVerificationError,
    WebhookVerifier,
)
from synapse.module_api import NOT_SPAM, ModuleApi, make_deferred_yieldable
from synapse.module_api.errors import Codes
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from heron_synapse.bridge import LoopThread
from heron_synapse.config import ConfigError, HeronConfig
from heron_synapse.ids import event_id_for_message, guild_id_for_room, heron_id, message_id_for_event
from heron_synapse.power import CREATOR_LEVEL, power_level_of, roles_for_level
from heron_synapse.spaces import SpaceMapper
from heron_synapse.state import ModuleState, Mute

__all__ = ["CREATOR_LEVEL", "HeronModule", "power_level_of", "roles_for_level"]

logger = logging.getLogger("heron_synapse")

REJECT = frozenset({"block", "timeout_author"})
REDACT_LATER = frozenset({"hold_for_review", "block", "timeout_author"})
TEXT_TYPES = frozenset({"m.text", "m.notice", "m.emote"})
ENCRYPTED_REFUSED = "encrypted messages cannot be moderated, so this server does not accept them"

try:  # Synapse ships prometheus_client; the counters show on its metrics listener.
    from prometheus_client import Counter

    CHECKS = Counter("heron_synapse_checks_total", "Pre-send checks by outcome", ["outcome"])
    APPLIED = Counter("heron_synapse_webhook_actions_total", "Webhook events by what was done", ["done"])
except Exception:  # pragma: no cover - metrics are optional
    CHECKS = APPLIED = None


def _count(counter: Any, label: str) -> None:
    if counter is not None:
        counter.labels(label).inc()


def _iso_ms(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _thaw(value: Any) -> Any:
    """A plain, mutable copy of event content (Synapse hands out frozen mappings)."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


class HeronModule:
    """`modules: [{module: heron_synapse.HeronModule, config: {...}}]` in homeserver.yaml."""

    def __init__(self, config: HeronConfig, api: ModuleApi) -> None:
        self.config = config
        self.api = api
        self.loop = LoopThread()
        self.state = ModuleState(config.state_path)
        self.counts: dict[str, int] = {}
        self.bot_user_id = f"@{config.bot_localpart}:{api.server_name}"
        self._bot_token: str | None = None
        self._known_guilds: set[str] = set()
        for key in config.spaces:
            if key.startswith("#") and not api.is_mine(key):
                # Resolving another server's alias is a federation query on the send path.
                raise ConfigError(
                    f"heron_synapse: space alias {key} is not on this homeserver; use the space's room id"
                )
        self.spaces = SpaceMapper(api, config.spaces, config.map_spaces)
        # Rooms already logged as carrying encrypted messages (bounded: a log line, not state).
        self._encrypted_rooms: set[str] = set()
        budget_s = config.budget_ms / 1000
        # No retries on the send path: the budget has no room for a second attempt.
        self.heron = self._in_loop_sync(
            lambda: AsyncHeronClient(config.api_url, config.api_key, timeout=budget_s, retry=RetryPolicy(max_retries=0))
        )
        self.media = self._in_loop_sync(lambda: httpx.AsyncClient(base_url=config.homeserver_url, timeout=budget_s))
        if config.encrypted == "reject":
            api.register_spam_checker_callbacks(
                check_event_for_spam=self.check_event_for_spam,
                user_may_create_room=self.user_may_create_room,
                user_may_send_state_event=self.user_may_send_state_event,
            )
        else:
            api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)
        if config.webhook_secret:
            verifier = WebhookVerifier(config.webhook_secret, window_s=config.webhook_window_s)
            api.register_web_resource(config.webhook_path, WebhookResource(self, verifier))
        api.looping_background_call(self._lift_expired_mutes, config.mute_check_interval_s * 1000)
        logger.info(
            "heron_synapse: moderating through %s (budget %d ms, fail_open=%s, webhook %s, encrypted=%s, spaces %s)",
            config.api_url,
            config.budget_ms,
            config.fail_open,
            config.webhook_path if config.webhook_secret else "off",
            config.encrypted,
            f"{len(config.spaces)} listed, map_spaces={config.map_spaces}" if self.spaces.enabled else "off",
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> HeronConfig:
        return HeronConfig.parse(config)

    def _in_loop_sync(self, factory: Any) -> Any:
        """Create an asyncio object on the loop thread (httpx binds to the loop it first runs on)."""

        async def make() -> Any:
            return factory()

        return self.loop.submit(make()).result(10)

    async def _loop(self, coro: Any) -> Any:
        return await make_deferred_yieldable(self.loop.deferred(coro))

    def _tally(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        _count(CHECKS, outcome)

    def _tally_webhook(self, done: str) -> None:
        self.counts["webhook_" + done] = self.counts.get("webhook_" + done, 0) + 1
        _count(APPLIED, done)

    # ---- pre-send ------------------------------------------------------------------------------

    async def check_event_for_spam(self, event: Any) -> Any:
        if event.type == "m.room.encrypted" and not event.is_state():
            return self._encrypted(event)
        if event.type != "m.room.message" or event.is_state() or event.sender == self.bot_user_id:
            return NOT_SPAM
        started = time.monotonic()
        try:
            message, media = await self._message_for(event)
            if message is None:
                self._tally("skipped")
                return NOT_SPAM
            remaining = self.config.budget_ms / 1000 - (time.monotonic() - started)
            result = await self._loop(self._moderate((event.room_id, event.sender), message, media, remaining))
        except (TimeoutError, HeronUnavailable) as exc:
            return self._failed(event, f"no answer within {self.config.budget_ms} ms ({type(exc).__name__})")
        except HeronAPIError as exc:
            return self._failed(event, f"Heron answered {exc.status_code} {exc.code}")
        except Exception:
            logger.exception("heron_synapse: pre-send check of %s failed", event.event_id)
            return self._failed(event, "module error")
        if result.decision is None:
            # 202: Heron stored it and will decide by webhook; the webhook redacts if needed.
            self._tally("pending")
            return NOT_SPAM
        decision = result.decision
        if decision.action in REJECT:
            self._tally("rejected")
            self.loop.submit(self._mark_rejected(decision.message_id))
            logger.info(
                "heron_synapse: rejected %s from %s in %s: %s (%s)",
                event.event_id,
                event.sender,
                event.room_id,
                decision.action,
                decision.id,
            )
            if decision.action == "timeout_author":
                self.api.run_as_background_process(
                    "heron_mute", self._mute, event.room_id, event.sender, f"Heron decision {decision.id}"
                )
            return (Codes.FORBIDDEN, {"org.heron.action": decision.action, "org.heron.decision_id": decision.id})
        self._tally("allowed")
        return NOT_SPAM

    def _encrypted(self, event: Any) -> Any:
        """An end-to-end encrypted message: the server holds only ciphertext, so Heron is told
        nothing (its API refuses a message with neither text nor attachments, and a stand-in text
        would be scored as if the author had written it). `encrypted` decides; either way it is
        counted, so an admin can see how much of the traffic passes unchecked."""
        if self.config.encrypted == "reject":
            self._tally("encrypted_rejected")
            logger.info(
                "heron_synapse: rejected encrypted %s from %s in %s", event.event_id, event.sender, event.room_id
            )
            return (Codes.FORBIDDEN, {"org.heron.error": ENCRYPTED_REFUSED})
        self._tally("encrypted_unchecked")
        if event.room_id not in self._encrypted_rooms:
            if len(self._encrypted_rooms) >= 10_000:
                self._encrypted_rooms.clear()
            self._encrypted_rooms.add(event.room_id)
            logger.info(
                "heron_synapse: %s carries encrypted messages; they are delivered unchecked (encrypted: allow)",
                event.room_id,
            )
        return NOT_SPAM

    async def user_may_create_room(self, user_id: str, room_config: dict[str, Any]) -> Any:
        """encrypted: reject: refuse a room created encrypted (what clients do for private chats),
        rather than let every message in it be refused afterwards."""
        for ev in room_config.get("initial_state") or []:
            if isinstance(ev, Mapping) and ev.get("type") == "m.room.encryption":
                self._tally("encrypted_rejected")
                logger.info("heron_synapse: refused an encrypted room for %s", user_id)
                return (Codes.FORBIDDEN, {"org.heron.error": ENCRYPTED_REFUSED})
        return NOT_SPAM

    async def user_may_send_state_event(
        self, user_id: str, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> Any:
        """encrypted: reject: refuse turning encryption on in an existing room."""
        if event_type == "m.room.encryption":
            self._tally("encrypted_rejected")
            logger.info("heron_synapse: refused turning on encryption in %s for %s", room_id, user_id)
            return (Codes.FORBIDDEN, {"org.heron.error": ENCRYPTED_REFUSED})
        return NOT_SPAM

    def _failed(self, event: Any, why: str) -> Any:
        outcome = "failed_open" if self.config.fail_open else "failed_closed"
        self._tally(outcome)
        logger.warning("heron_synapse: %s for %s in %s: %s", outcome, event.event_id, event.room_id, why)
        if self.config.fail_open:
            return NOT_SPAM
        return (Codes.FORBIDDEN, {"org.heron.error": "moderation unavailable"})

    async def _message_for(self, event: Any) -> tuple[Message | None, tuple[str, str] | None]:
        content = event.content or {}
        msgtype = content.get("msgtype")
        message_id = message_id_for_event(event.event_id)
        if message_id is None:
            logger.warning("heron_synapse: event id %r cannot be a Heron message id; not checked", event.event_id)
            return None, None
        text = ""
        media: tuple[str, str] | None = None
        if msgtype in TEXT_TYPES:
            text = str(content.get("body", ""))
        elif msgtype == "m.image":
            # The body of an image is its file name unless a separate `filename` makes it a caption.
            if content.get("filename") and content.get("body") != content.get("filename"):
                text = str(content.get("body", ""))
            url = content.get("url")
            size = (content.get("info") or {}).get("size")
            if self.config.moderate_images and isinstance(url, str) and url.startswith("mxc://"):
                if isinstance(size, int) and size > self.config.max_image_bytes:
                    logger.info("heron_synapse: %s: image of %d bytes is over the inline limit", event.event_id, size)
                else:
                    media = (url, str((content.get("info") or {}).get("mimetype") or "application/octet-stream"))
        else:
            text = str(content.get("body", "")) if isinstance(content.get("body"), str) else ""
        text = text[:4000]
        if not text.strip() and media is None:
            return None, None
        guild_id, author = await self._guild_and_author(event)
        relates = content.get("m.relates_to") or {}
        reply_to = ((relates.get("m.in_reply_to") or {}).get("event_id")) if isinstance(relates, dict) else None
        thread = (
            relates.get("event_id") if isinstance(relates, dict) and relates.get("rel_type") == "m.thread" else None
        )
        context = Context(
            reply_to_id=message_id_for_event(reply_to) if isinstance(reply_to, str) else None,
            thread_id=message_id_for_event(thread) if isinstance(thread, str) else None,
        )
        message = Message(
            id=message_id,
            text=text,
            guild_id=guild_id,
            channel_id=heron_id(event.room_id),
            author=author,
            context=context,
            timestamp=_iso_ms(event.origin_server_ts),
        )
        if media is not None:
            await self._ensure_bot_token()
        return message, media

    async def _guild_and_author(self, event: Any) -> tuple[str, Author]:
        wanted: list[tuple[str, str | None]] = [
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
            ("m.room.member", event.sender),
        ]
        if self.spaces.enabled:
            wanted.append(("m.space.parent", None))
        state = await self.api.get_room_state(event.room_id, wanted)
        guild_id = guild_id_for_room(event.room_id)
        if self.spaces.enabled:
            guild_id = await self.spaces.guild_for(event.room_id, state) or guild_id
        level = power_level_of(state, event.sender)
        member = state.get(("m.room.member", event.sender))
        joined_at = _iso_ms(member.origin_server_ts) if member is not None else None
        created_at = None
        if self.api.is_mine(event.sender):
            info = await self.api.get_userinfo_by_id(event.sender)
            if info is not None and info.creation_ts:
                created_at = _iso_ms(int(info.creation_ts) * 1000)
        author = Author(
            id=heron_id(event.sender), created_at=created_at, joined_at=joined_at, roles=roles_for_level(level)
        )
        return guild_id, author

    async def _ensure_bot_token(self) -> None:
        """A token for the module's own account, to download media like any client would."""
        if self._bot_token is not None:
            return
        if await self.api.check_user_exists(self.bot_user_id) is None:
            await self.api.register_user(self.config.bot_localpart, displayname="Heron moderation")
        _device, token, _exp, _refresh = await self.api.register_device(self.bot_user_id, "HERON_MODULE")
        self._bot_token = token

    async def _moderate(
        self, event_ref: tuple[str, str], message: Message, media: tuple[str, str] | None, budget_s: float
    ) -> Any:
        """On the loop thread: download the image, then one call to Heron, all within budget_s."""
        self.state.remember_event(message.id, *event_ref)
        deadline = time.monotonic() + budget_s

        async def run() -> Any:
            if media is not None:
                mxc, mimetype = media
                server_name, media_id = mxc[len("mxc://") :].split("/", 1)
                r = await self.media.get(
                    f"/_matrix/client/v1/media/download/{server_name}/{media_id}",
                    headers={"Authorization": f"Bearer {self._bot_token}"},
                )
                r.raise_for_status()
                if len(r.content) <= self.config.max_image_bytes:
                    message.attachments.append(Attachment(content=r.content, content_type=mimetype))
            try:
                return await self.heron.moderate(message)
            except HeronAPIError as exc:
                if exc.code != "unknown_guild" or message.guild_id is None:
                    raise
                # First message of a room: register its guild (platform default policy), once.
                await self.heron.put_guild(message.guild_id)
                self._known_guilds.add(message.guild_id)
                return await self.heron.moderate(message)

        return await asyncio.wait_for(run(), timeout=max(0.001, deadline - time.monotonic()))

    # ---- after the fact ------------------------------------------------------------------------

    async def apply_event(self, event: WebhookEvent) -> str:
        """Apply one verified webhook event; returns what was done (for the log and the test)."""
        decision = event.decision
        message_id = decision.message_id
        applied = await self._loop(self._applied_revision(message_id))
        if applied >= event.revision:
            self._tally_webhook("stale")
            logger.info(
                "heron_synapse: %s r%d is not newer than r%d: not applied", decision.id, event.revision, applied
            )
            return "stale"
        event_id = event_id_for_message(message_id)
        done = "nothing"
        if decision.action in REDACT_LATER:
            ref = await self._loop(self._event_ref(message_id))
            if ref is None:
                done = "unknown"  # not checked by this homeserver's module
            elif ref[2]:
                done = "absent"  # rejected before it was sent: nothing to redact
            else:
                original = _EventRef(event_id=event_id, room_id=ref[0], sender=ref[1])
                if await self._loop(self._claim_redaction(message_id)):
                    try:
                        await self._redact(original, f"Heron: {decision.action} ({decision.id} r{event.revision})")
                    except Exception:
                        await self._loop(self._release_redaction(message_id))
                        raise
                    done = "redacted"
                else:
                    done = "already_redacted"
                if decision.action == "timeout_author":
                    await self._mute(original.room_id, original.sender, f"Heron decision {decision.id}")
                    done += "+muted"
        await self._loop(self._record(message_id, event.revision, decision.action))
        self._tally_webhook(done)
        logger.info("heron_synapse: %s r%d %s -> %s", decision.id, event.revision, decision.action, done)
        return done

    async def _mark_rejected(self, message_id: str) -> None:
        self.state.mark_rejected(message_id)

    async def _event_ref(self, message_id: str) -> tuple[str, str, bool] | None:
        return self.state.event(message_id)

    async def _applied_revision(self, message_id: str) -> int:
        row = self.state.db.execute("SELECT revision FROM applied WHERE message_id = ?", (message_id,)).fetchone()
        return int(row[0]) if row else 0

    async def _claim_redaction(self, message_id: str) -> bool:
        return self.state.mark_redacted(message_id)

    async def _release_redaction(self, message_id: str) -> None:
        self.state.unmark_redacted(message_id)

    async def _record(self, message_id: str, revision: int, action: str) -> None:
        self.state.claim_revision(message_id, revision, action)

    async def _local_actor(self, room_id: str, needed: int, above: int | None = None) -> str | None:
        """The highest-powered local member with at least `needed` (and more than `above`): the
        account whose authority Synapse's own admin API borrows to act in a room."""
        state = await self.api.get_room_state(
            room_id, [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", None)]
        )
        best: tuple[int, str] | None = None
        for (etype, key), ev in state.items():
            if etype != "m.room.member" or ev.content.get("membership") != "join" or not self.api.is_mine(key):
                continue
            level = power_level_of(state, key)
            if level >= needed and (above is None or level > above) and (best is None or level > best[0]):
                best = (level, key)
        return best[1] if best else None

    async def _redact(self, original: Any, reason: str) -> None:
        state = await self.api.get_room_state(original.room_id, [("m.room.power_levels", "")])
        pl = state.get(("m.room.power_levels", ""))
        needed = int((pl.content if pl is not None else {}).get("redact", 50))
        # Anyone may redact their own event: the sender is the fallback actor.
        actor = await self._local_actor(original.room_id, needed) or original.sender
        await self.api.create_and_send_event_into_room(
            {
                "type": "m.room.redaction",
                "room_id": original.room_id,
                "sender": actor,
                "redacts": original.event_id,
                "content": {"redacts": original.event_id, "reason": reason},
            }
        )

    async def _mute(self, room_id: str, user_id: str, reason: str) -> None:
        """timeout_author: the author's power level drops below the level needed to send
        messages, until `mute_seconds` pass (then _lift_expired_mutes restores it)."""
        state = await self.api.get_room_state(room_id, [("m.room.power_levels", "")])
        pl = state.get(("m.room.power_levels", ""))
        if pl is None:
            logger.warning("heron_synapse: cannot mute %s in %s: the room has no power levels", user_id, room_id)
            return
        content = _thaw(pl.content)
        users = content.setdefault("users", {})
        default = int(content.get("users_default", 0))
        events = content.get("events") or {}
        send_level = int(events.get("m.room.message", content.get("events_default", 0)))
        mute_level = send_level - 1
        current = int(users.get(user_id, default))
        expires_at = time.time() + self.config.mute_seconds
        if current <= mute_level:
            await self._loop(self._store_mute(Mute(room_id, user_id, mute_level, None, expires_at)))
            return
        needed = int(events.get("m.room.power_levels", content.get("state_default", 50)))
        actor = await self._local_actor(room_id, needed, above=current)
        if actor is None:
            logger.warning("heron_synapse: cannot mute %s in %s: no local member has the power", user_id, room_id)
            return
        previous = users.get(user_id)
        users[user_id] = mute_level
        await self.api.create_and_send_event_into_room(
            {"type": "m.room.power_levels", "room_id": room_id, "sender": actor, "state_key": "", "content": content}
        )
        await self._loop(
            self._store_mute(
                Mute(room_id, user_id, mute_level, int(previous) if previous is not None else None, expires_at)
            )
        )
        logger.info("heron_synapse: muted %s in %s for %d s (%s)", user_id, room_id, self.config.mute_seconds, reason)

    async def _store_mute(self, mute: Mute) -> None:
        self.state.add_mute(mute)

    async def _expired(self) -> list[Mute]:
        return self.state.expired_mutes()

    async def _forget_mute(self, room_id: str, user_id: str) -> None:
        self.state.remove_mute(room_id, user_id)

    async def _lift_expired_mutes(self) -> None:
        for mute in await self._loop(self._expired()):
            try:
                await self._unmute(mute)
            except Exception:
                logger.exception("heron_synapse: lifting the mute of %s in %s failed", mute.user_id, mute.room_id)
                continue
            await self._loop(self._forget_mute(mute.room_id, mute.user_id))

    async def _unmute(self, mute: Mute) -> None:
        state = await self.api.get_room_state(mute.room_id, [("m.room.power_levels", "")])
        pl = state.get(("m.room.power_levels", ""))
        if pl is None:
            return
        content = _thaw(pl.content)
        users = content.setdefault("users", {})
        if int(users.get(mute.user_id, content.get("users_default", 0))) != mute.level:
            return  # someone changed it since; theirs wins
        if mute.previous is None:
            users.pop(mute.user_id, None)
        else:
            users[mute.user_id] = mute.previous
        needed = int((content.get("events") or {}).get("m.room.power_levels", content.get("state_default", 50)))
        actor = await self._local_actor(mute.room_id, needed)
        if actor is None:
            return
        await self.api.create_and_send_event_into_room(
            {
                "type": "m.room.power_levels",
                "room_id": mute.room_id,
                "sender": actor,
                "state_key": "",
                "content": content,
            }
        )
        logger.info("heron_synapse: mute of %s in %s expired; power level restored", mute.user_id, mute.room_id)


@dataclass(frozen=True)
class _EventRef:
    event_id: str
    room_id: str
    sender: str


class WebhookResource(Resource):
    """POST target for Heron's signed webhooks (registered with `register_web_resource`).

    Answers 401 to anything not signed with the configured secret or outside the timestamp
    window (or a replayed request), 200 once the event is applied (or was already), and 500 when
    applying failed, so Heron retries it later.
    """

    isLeaf = True

    def __init__(self, module: HeronModule, verifier: WebhookVerifier) -> None:
        super().__init__()
        self.module = module
        self.verifier = verifier

    @staticmethod
    def _reply(request: Any, status: int, body: dict[str, Any]) -> None:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.write(json.dumps(body).encode())
        request.finish()

    def render_POST(self, request: Any) -> Any:  # noqa: N802 - Twisted's name
        raw = request.content.read()
        headers = {k.decode(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        try:
            # An HMAC over a small body: cheap enough for the reactor thread.
            event = self.verifier.verify(headers, raw)
        except WebhookVerificationError as exc:
            logger.warning("heron_synapse: refused a webhook: %s", exc)
            request.setResponseCode(401)
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"error": str(exc)}).encode()

        d = self.module.api.run_as_background_process("heron_webhook", self.module.apply_event, event)

        def ok(done: str) -> None:
            self._reply(request, 200, {"done": done})

        def failed(failure: Any) -> None:
            logger.error("heron_synapse: applying %s failed: %s", event.event_id, failure.getErrorMessage())
            self._reply(request, 500, {"error": "could not apply the event; retry"})

        d.addCallbacks(ok, failed)
        return NOT_DONE_YET

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"module": "heron_synapse", "counts": self.module.counts}).encode()
