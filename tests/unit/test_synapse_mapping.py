"""heron-synapse's pure parts (id mapping, config checks), importable without Synapse."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integrations" / "matrix_synapse"))

from heron_synapse.config import ConfigError, HeronConfig  # noqa: E402
from heron_synapse.ids import (  # noqa: E402
    event_id_for_message,
    guild_id_for_room,
    heron_id,
    message_id_for_event,
)

HERON_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")  # pipeline.types.Id


@pytest.mark.parametrize(
    "event_id",
    ["$1PvjwAAZfmoJCLfE33YoTaPAbzBvl-qqJXlQRLoD3MQ", "$abc123:example.org", "$N1Jm_hIIasP-Z9uLF3:matrix.org:8448"],
)
def test_event_ids_round_trip(event_id: str) -> None:
    mid = message_id_for_event(event_id)
    assert mid is not None and HERON_ID.match(mid)
    assert event_id_for_message(mid) == event_id


def test_event_ids_that_cannot_round_trip_are_refused() -> None:
    assert message_id_for_event("$has/slash+plus") is None  # room v1/v2 style with odd characters
    assert message_id_for_event("not-an-event") is None


@pytest.mark.parametrize(
    "mxid",
    [
        "!rZGC2F25FRwWT783t6NM-QDRN9FOIWlzLf69XKWhqpE",
        "!abc:example.org",
        "@bob:localhost",
        "@weird=name/x:example.org",
        "!" + "x" * 200,
    ],
)
def test_room_and_user_ids_become_valid_heron_ids(mxid: str) -> None:
    hid = heron_id(mxid)
    assert HERON_ID.match(hid)
    assert heron_id(mxid) == hid  # stable
    assert guild_id_for_room("!abc:example.org") == "abc:example.org"


def test_config_checks() -> None:
    ok = HeronConfig.parse({"api_url": "http://h", "api_key": "k", "budget_ms": 200, "fail_open": False})
    assert ok.budget_ms == 200 and ok.fail_open is False and ok.webhook_secret is None
    for bad in [
        {"api_key": "k"},
        {"api_url": "http://h", "api_key": "k", "budget_ms": 0},
        {"api_url": "http://h", "api_key": "k", "budget_ms": "200"},
        {"api_url": "http://h", "api_key": "k", "fail_open": "yes"},
        {"api_url": "http://h", "api_key": "k", "spaces": ["!s:x"]},
        {"api_url": "http://h", "api_key": "k", "budget": 200},  # a typo is an error, not ignored
    ]:
        with pytest.raises(ConfigError):
            HeronConfig.parse(bad)
