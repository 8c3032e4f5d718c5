"""Links: extraction however they are written (the feature stage), and list matching (LinkScorer)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.features import extract_links, prepare
from pipeline.guilds import EMPTY_LISTS, GuildLists
from pipeline.scorers.links import DEFAULT_BLOCKLIST, LinkScorer
from pipeline.settings import Settings
from pipeline.types import Message, Signal

BAD = ["steamcommunity-gift.ru", "discord-nitro.gift", "evil.example", "bit.ly/3bad", "xn--dscord-pvf.com"]


@pytest.fixture
def blocklist(tmp_path: Path) -> Path:
    path = tmp_path / "domain-list.json"
    path.write_text(json.dumps({"domains": BAD}), "utf-8")
    return path


@pytest.fixture
def scorer(blocklist: Path) -> LinkScorer:
    return LinkScorer(blocklist_path=blocklist, use_model=False).load()  # list semantics alone


def run(scorer: LinkScorer, text: str, lists: GuildLists = EMPTY_LISTS) -> Signal:
    return scorer.score([prepare(Message(text=text), lists)])[0]


# --- extraction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "path", "written"),
    [
        ("free nitro at discord-nitro.gift/abc!", "discord-nitro.gift", "abc", "discord-nitro.gift/abc"),
        ("see https://example.com/a.", "example.com", "a", "https://example.com/a"),
        ("<https://example.com/x>", "example.com", "x", "https://example.com/x"),
        ("(https://example.com/x)", "example.com", "x", "https://example.com/x"),
        ("hxxps://evil[.]example/x", "evil.example", "x", "hxxps://evil[.]example/x"),
        ("evil(dot)example", "evil.example", "", "evil(dot)example"),
        ("HTTPS://EVIL.EXAMPLE/Login", "evil.example", "login", "HTTPS://EVIL.EXAMPLE/Login"),
        ("www.Example.com", "www.example.com", "", "www.Example.com"),
        ("ｅｖｉｌ．ｅｘａｍｐｌｅ", "evil.example", "", "ｅｖｉｌ．ｅｘａｍｐｌｅ"),
        ("evil\u200b.example", "evil.example", "", "evil\u200b.example"),
        ("dіscord.com", "xn--dscord-pvf.com", "", "dіscord.com"),  # Cyrillic і, as punycode
        ("https://discord.com@evil.example/x", "evil.example", "x", "https://discord.com@evil.example/x"),
        ("visit evil.example.", "evil.example", "", "evil.example"),
        ("EVIL[DOT]EXAMPLE/x", "evil.example", "x", "EVIL[DOT]EXAMPLE/x"),  # no '.' at all: not skipped
        ("evil\u3002example", "evil.example", "", "evil\u3002example"),  # ideographic full stop
    ],
)
def test_extraction(text: str, host: str, path: str, written: str) -> None:
    (link,) = extract_links(text)
    assert (link.host, link.path, link.text) == (host, path, written)
    assert text[link.span[0] : link.span[1]] == written


def test_markdown_label_and_target_are_both_links() -> None:
    links = extract_links("[discord.com](https://steamcommunity-gift.ru/login)")
    assert [(x.host, x.path) for x in links] == [("discord.com", ""), ("steamcommunity-gift.ru", "login")]


def test_parentheses_inside_urls_are_kept() -> None:
    (link,) = extract_links("see (https://en.wikipedia.org/wiki/Foo_(bar)).")
    assert link.path == "wiki/foo_(bar)"


@pytest.mark.parametrize("text", ["ok.", "e.g. this", "version 1.2.3", "mail me at a@b.com", "3.14", "no links"])
def test_not_links(text: str) -> None:
    assert extract_links(text) == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("join discord.gg/AbC123 now", "AbC123"),  # invite codes are case-sensitive: kept as written
        ("https://discord.com/invite/heron-dev", "heron-dev"),
        ("discordapp.com/invite/XyZ/", "XyZ"),
        ("discord.com/channels/1/2", None),
        ("https://example.gg/AbC123", None),
        ("discord.gg/", None),
    ],
)
def test_discord_invites(text: str, code: str | None) -> None:
    (link,) = extract_links(text)
    assert link.invite == code


def test_links_are_read_from_the_item_context(scorer: LinkScorer) -> None:
    """The scorer matches what the feature stage found; it does not look at the text again."""
    item = prepare(Message(text="nothing to see"))
    assert not scorer.applies_to(item)
    item.context.links = tuple(extract_links("steamcommunity-gift.ru"))
    assert scorer.applies_to(item)
    assert scorer.score([item])[0].scores == {"scam": 1.0}


# --- matching ---------------------------------------------------------------------------------


def test_known_domain_is_a_definitive_scam(scorer: LinkScorer) -> None:
    sig = run(scorer, "claim at https://steamcommunity-gift.ru now")
    assert sig.scores == {"scam": 1.0} and sig.definitive
    assert [e.detail for e in sig.evidence] == [
        'known phishing domain "steamcommunity-gift.ru" (link "https://steamcommunity-gift.ru")'
    ]
    assert sig.evidence[0].span == (9, 39)


def test_bare_domain_evidence_is_short(scorer: LinkScorer) -> None:
    sig = run(scorer, "steamcommunity-gift.ru")
    assert sig.evidence[0].detail == 'known phishing domain "steamcommunity-gift.ru"'


def test_parent_domain_matches(scorer: LinkScorer) -> None:
    sig = run(scorer, "login.secure.evil.example/steam")
    assert sig.scores["scam"] == 1.0
    assert 'known phishing domain "evil.example"' in sig.evidence[0].detail


def test_path_entries_match_that_path_and_below_only(scorer: LinkScorer) -> None:
    assert run(scorer, "bit.ly/3bad").scores["scam"] == 1.0
    assert run(scorer, "https://BIT.LY/3bad/more?x=1").scores["scam"] == 1.0
    assert run(scorer, "bit.ly/3badx").scores["scam"] == 0.0
    assert run(scorer, "bit.ly/other").scores["scam"] == 0.0
    assert run(scorer, "bit.ly/3bad").evidence[0].detail == 'known phishing link "bit.ly/3bad"'


def test_punycode_and_unicode_forms_meet(scorer: LinkScorer) -> None:
    assert run(scorer, "dіscord.com/gift").scores["scam"] == 1.0  # list has the punycode form


def test_guild_extra_list(scorer: LinkScorer) -> None:
    lists = GuildLists(blocked_links=("my-rival.example", "tinyurl.com/xyz"))
    sig = run(scorer, "go to www.my-rival.example", lists)
    assert sig.scores["scam"] == 1.0
    assert sig.evidence[0].detail.startswith('server-blocked domain "my-rival.example"')
    assert run(scorer, "tinyurl.com/xyz/1", lists).scores["scam"] == 1.0
    assert run(scorer, "go to www.my-rival.example").scores["scam"] == 0.0  # other guilds unaffected


@pytest.mark.parametrize("text", ["https://google.com/search?q=x", "discord.com/channels/1/2", "www.youtube.com"])
def test_benign_links_are_a_real_zero(scorer: LinkScorer, text: str) -> None:
    sig = run(scorer, text)
    assert sig.scores == {"scam": 0.0} and not sig.definitive and sig.evidence == []


def test_no_links_means_no_scores(scorer: LinkScorer) -> None:
    item = prepare(Message(text="hello there"))
    assert not scorer.applies_to(item)
    assert scorer.score([item])[0].scores == {}


# --- the platform list ------------------------------------------------------------------------


def test_missing_list_is_reported_not_raised(tmp_path: Path) -> None:
    scorer = LinkScorer(blocklist_path=tmp_path / "nope.json", use_model=False).load()
    status = scorer.status()
    assert not status["ok"] and "not found" in status["detail"] and status["entries"] == 0
    assert run(scorer, "steamcommunity-gift.ru").scores == {"scam": 0.0}  # still scores, from no list


def test_env_variable_names_the_list(blocklist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERON_LINK_BLOCKLIST", str(blocklist))
    scorer = LinkScorer.from_settings(Settings()).load()
    assert scorer.status()["ok"] and scorer.status()["entries"] == len(BAD)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(["more-evil.example"]), "utf-8")
    monkeypatch.setenv("HERON_LINK_BLOCKLIST", f"{blocklist}{os.pathsep}{extra}")  # several lists
    scorer = LinkScorer.from_settings(Settings()).load()
    assert scorer.status()["entries"] == len(BAD) + 1
    assert run(scorer, "more-evil.example/x").scores == {"scam": 1.0}


def test_guild_lists_are_compiled_once_per_content(scorer: LinkScorer, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.scorers import links

    compiled: list[tuple[str, ...]] = []
    original = links.LinkList.from_entries.__func__  # type: ignore[attr-defined]

    def counting(cls: type[links.LinkList], entries: tuple[str, ...], exclude: tuple[str, ...] = ()) -> links.LinkList:
        compiled.append(tuple(entries))
        return original(cls, entries, exclude)

    monkeypatch.setattr(links.LinkList, "from_entries", classmethod(counting))
    for _ in range(3):  # a policy layer that builds an equal GuildLists per request
        assert run(scorer, "rival.example", GuildLists(blocked_links=("rival.example",))).scores == {"scam": 1.0}
    assert compiled == [("rival.example",)]


def test_broken_list_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json", "utf-8")
    status = LinkScorer(blocklist_path=path).load().status()
    assert not status["ok"] and "unreadable" in status["detail"]


@pytest.mark.skipif(not DEFAULT_BLOCKLIST.exists(), reason="shared phishing list not on this machine")
def test_shared_list_loads_and_flags_nothing_benign() -> None:
    # No wall-clock bound here (timing assertions are flaky on a shared machine); load speed
    # belongs in bench/.
    scorer = LinkScorer(blocklist_path=DEFAULT_BLOCKLIST, use_model=False).load()
    assert scorer.status()["entries"] > 20_000
    for text in ("google.com", "discord.com", "discord.gg/abc", "github.com", "counter-strike.net"):
        assert run(scorer, text).scores == {"scam": 0.0}, text
    assert run(scorer, "https://steam-account.ru/login").scores == {"scam": 1.0}
