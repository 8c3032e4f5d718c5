"""Webhook signatures and retry timing, as a receiving chat service sees them."""

from __future__ import annotations

import random

import pytest

from pipeline.signing import SignatureError, sign, signed_headers, verify
from pipeline.sinks import backoff_delay, webhook_body

SECRET = "whsec_test"
BODY = webhook_body({"id": "dec_1", "action": "block"})


def test_a_genuine_fresh_delivery_verifies() -> None:
    headers = signed_headers(SECRET, BODY, "dec_1", 1, timestamp=1_700_000_000)
    verify(SECRET, headers, BODY, now=1_700_000_010)
    assert headers["Heron-Decision-Id"] == "dec_1"
    assert headers["Heron-Signature"] == sign(SECRET, 1_700_000_000, BODY)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h, b: (h, b + b" "), "signature mismatch"),
        (lambda h, b: ({**h, "Heron-Signature": "v1=" + "0" * 64}, b), "signature mismatch"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "Heron-Signature"}, b), "missing"),
        (lambda h, b: ({**h, "Heron-Timestamp": "soon"}, b), "not an integer"),
    ],
)
def test_tampering_is_rejected(mutate, message) -> None:  # type: ignore[no-untyped-def]
    headers = signed_headers(SECRET, BODY, "dec_1", 1, timestamp=1_700_000_000)
    h, b = mutate(headers, BODY)
    with pytest.raises(SignatureError, match=message):
        verify(SECRET, h, b, now=1_700_000_000)


def test_replays_outside_the_window_are_rejected() -> None:
    headers = signed_headers(SECRET, BODY, "dec_1", 1, timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match="replay window"):
        verify(SECRET, headers, BODY, window_s=300, now=1_700_000_301)


def test_wrong_secret_is_rejected() -> None:
    headers = signed_headers(SECRET, BODY, "dec_1", 1, timestamp=1_700_000_000)
    with pytest.raises(SignatureError):
        verify("whsec_other", headers, BODY, now=1_700_000_000)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(a, 1.0, 60.0, rng) for a in range(1, 10)]
    for attempt, d in enumerate(delays, start=1):
        full = min(60.0, 2 ** (attempt - 1))
        assert 0.5 * full <= d <= full
    assert max(delays) <= 60.0
    assert len({round(backoff_delay(3, 1.0, 60.0), 6) for _ in range(20)}) > 1  # jittered
