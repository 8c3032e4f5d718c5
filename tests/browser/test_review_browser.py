"""The review desk in a real headless Chromium (Playwright): a held message appears in the queue,
a moderator signs in, claims and upholds it with the keyboard alone, and the chat service's
receiver gets the signed revision. Screenshots go to docs/review/ when HERON_UPDATE_SCREENSHOTS=1.

The browser is Playwright's own Chromium when `python -m playwright install chromium` has run, or
the system's `chromium` (Debian package) otherwise; `make install` installs one of them. A machine
with neither fails this test with the command to run, never skips it.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Receiver

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "review"
PASSWORD = "correct horse battery"


def png(width: int = 48, height: int = 48) -> bytes:
    """A small red-and-yellow PNG, made here so the test needs no image library or file."""
    rows = b"".join(b"\x00" + b"".join(b"\xd0\x20\x20" if (x // 8 + y // 8) % 2 else b"\xf0\xc0\x10"
                                      for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(make_api: Any) -> Iterator[tuple[str, Any, Any]]:
    """The app over the embedded runtime, served by a real uvicorn on a free port."""
    import uvicorn

    # image_hash: its images are decoded, so the held message keeps a review thumbnail
    client, rt = make_api(review_double_share=0.0, scorers=["rules", "links", "image_hash"])
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning",
                                        lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", client, rt
    srv.should_exit = True
    thread.join(10)


def launch(playwright: Any) -> Any:
    """Playwright's Chromium if installed, else the system's; a clear failure with the fix if neither."""
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    try:
        return playwright.chromium.launch(headless=True, args=args)
    except Exception as exc:  # noqa: BLE001 - the bundled browser is not installed: try the system's
        system = shutil.which("chromium") or shutil.which("chromium-browser")
        if system is None:
            pytest.fail("no Chromium for Playwright: run `python -m playwright install --with-deps chromium` or "
                        f"`apt-get install chromium` (make install does this) [{exc}]")
        return playwright.chromium.launch(headless=True, executable_path=system, args=args)


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1366, "height": 800})  # a common laptop screen
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        yield pg
        context.close()
        browser.close()


def shot(pg: Any, name: str) -> None:
    if os.environ.get("HERON_UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_moderator_works_a_held_message_with_the_keyboard(server: Any, page: Any) -> None:
    base, client, rt = server
    receiver = Receiver()
    try:
        receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
        policy = {"thresholds": {"toxicity": [{"threshold": 0.5, "action": "hold_for_review"}]}}
        client.put("/v1/guilds/guild-1", json={"policy": policy, "lists": {"keywords": {"toxicity": ["idiot"]}}})
        tenant = rt.store.tenants.ensure("acme")
        rt.store.reviewers.create(tenant, "mod-ana", PASSWORD, "moderator", ["guild-1"])
        # an earlier message by the same author, then the held one with its conversation and an image
        client.post("/v1/messages", json={"id": "m0", "guild_id": "guild-1", "author": {"id": "user-42"},
                                          "text": "good game yesterday"})
        r = client.post("/v1/moderate", json={
            "id": "m1", "guild_id": "guild-1", "channel_id": "general",
            "author": {"id": "user-42", "roles": ["member"]},
            "text": "you are a complete idiot, nobody wants you here",
            "context": {"previous_texts": ["anyone up for a game tonight?", "sure, after dinner"],
                        "reply_to_text": "sure, after dinner"},
            "attachments": [{"content_base64": base64.b64encode(png()).decode(), "content_type": "image/png",
                             "filename": "meme.png"}],
        })
        assert r.status_code == 200 and r.json()["action"] == "hold_for_review", r.text
        # The sync answer came on text alone (images pending); the image is scored after it and the
        # review thumbnail is kept with that complete revision.
        deadline = time.monotonic() + 90
        while client.get(f"/v1/decisions/{r.json()['id']}").json().get("status") != "complete":
            assert time.monotonic() < deadline, "the image's complete decision never came"
            time.sleep(0.2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not client.get("/v1/review/items").json()["items"]:
            time.sleep(0.1)
        assert len(client.get("/v1/review/items").json()["items"]) == 1

        # unauthenticated: the login page; sign in with the keyboard alone
        page.goto(f"{base}/review")
        assert "/review/login" in page.url
        shot(page, "login")
        page.keyboard.type("mod-ana")
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}/review")
        rows = page.locator("table.queue tbody tr")
        assert rows.count() == 1
        shot(page, "queue")

        # j selects the first row, Enter opens it
        page.keyboard.press("j")
        target = page.locator("table.queue tbody tr.selected a.open").get_attribute("href")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}{target}")
        assert page.locator("#message-text").inner_text() == "you are a complete idiot, nobody wants you here"
        assert "anyone up for a game tonight?" in page.locator("ol.context").inner_text()
        assert page.locator("#policy-version").inner_text() == "1"
        assert "m0" in page.locator("#hist-h + ul").inner_text()  # the author's earlier decision
        img = page.locator("button.thumb img")
        assert "blurred" in (img.get_attribute("class") or "")
        filt = img.evaluate("e => getComputedStyle(e).filter")
        assert "blur" in filt and "grayscale" in filt
        shot(page, "item")
        page.keyboard.press("r")  # reveal the image, then hide it again
        assert "blurred" not in (img.get_attribute("class") or "")
        page.keyboard.press("r")

        # c claims; u upholds (toxicity is pre-ticked from the reasons)
        page.keyboard.press("c")
        page.wait_for_selector("#resolve-form")
        assert "reviewer:mod-ana" in page.locator("#claimed-by").inner_text()
        shot(page, "claimed")
        page.keyboard.press("u")
        page.wait_for_url(f"{base}/review?notice=*")
        notice = page.locator(".notice").inner_text()
        # revision 1: the sync answer on text; 2: the same with the image scored; 3: the verdict
        assert "uphold" in notice and "revision 3 sent" in notice
        assert page.locator("table.queue tbody tr").count() == 0
        shot(page, "after-verdict")

        # the chat service got the signed revision for that message
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not [e for e in receiver.events() if e["revision"] == 3]:
            time.sleep(0.05)
        revised = [e for e in receiver.events() if e["revision"] == 3]
        assert len(revised) == 1 and receiver.bad_signatures == 0
        assert revised[0]["decision"]["message_id"] == "m1" and revised[0]["cause"] == "review"
        assert revised[0]["decision"]["action"] == "block"
        assert revised[0]["decision"]["reasons"][-1]["text"].startswith("review: uphold")
        # the filters update the list in place (htmx), without leaving the page
        page.focus("select[name=status]")
        page.select_option("select[name=status]", "resolved")
        page.wait_for_selector("table.queue tbody tr")
        assert "/review?notice=" in page.url  # the same page: only the list was swapped
        assert page.locator("table.queue tbody tr").count() == 1
        assert "resolved" in page.locator("table.queue tbody tr").inner_text()
        page.goto(f"{base}/review/stats")
        assert "reviewer:mod-ana" in page.content()
        shot(page, "quality")
    finally:
        receiver.close()
