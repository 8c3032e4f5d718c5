"""heron-synapse's newer options (spaces by alias, map_spaces, encrypted) are checked when
Synapse starts: a mistake stops the homeserver with a message naming the key, instead of every
message failing later (a guild id Heron refuses) or a typo silently meaning "allow"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integrations" / "matrix_synapse"))

from heron_synapse.config import ConfigError, HeronConfig  # noqa: E402

BASE = {"api_url": "http://h", "api_key": "k"}


def test_defaults_change_nothing_for_existing_configs() -> None:
    c = HeronConfig.parse(dict(BASE))
    assert c.spaces == {} and c.map_spaces is False and c.encrypted == "allow"


def test_spaces_by_room_id_or_alias() -> None:
    c = HeronConfig.parse(
        {
            **BASE,
            # a room id before room version 12, one from v12 on (no server part), an alias
            "spaces": {
                "!abc:example.org": "one",
                "!L5lJ-C8Z3i4p6vop0d6Xx-RNBUqX6B1M4Mhtf2bzZmE": "two",
                "#c:ex.org": "3",
            },
            "map_spaces": True,
        }
    )
    assert c.spaces["#c:ex.org"] == "3" and len(c.spaces) == 3 and c.map_spaces is True


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"spaces": {"community": "g"}}, "'spaces' key 'community'"),  # neither !id nor #alias
        ({"spaces": {"#community": "g"}}, "'spaces' key '#community'"),  # no server
        ({"spaces": {"!": "g"}}, "'spaces' key '!'"),
        ({"spaces": {"!abc:example.org": "has space"}}, "guild id 'has space'"),
        ({"spaces": {"!abc:example.org": "x" * 129}}, "guild id"),
        ({"map_spaces": "yes"}, "'map_spaces'"),
        ({"encrypted": "deny"}, "'encrypted' must be one of allow, reject"),
        ({"encrypted": True}, "'encrypted'"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        HeronConfig.parse({**BASE, **raw})
    assert names in str(err.value)
