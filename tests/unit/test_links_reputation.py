"""Link reputation: public suffixes, no bare file.py links, the bundled bank, look-alikes, the
learned domain model (artifact integrity and behaviour) and the scorer that combines them."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.links.domain_model import DEFAULT_ARTIFACT_DIR, ArtifactError, LinkModel, score_map
from pipeline.features import extract_links, prepare
from pipeline.features.domains import is_shortener, plausible_bare_host, registrable_domain
from pipeline.guilds import EMPTY_LISTS, GuildLists
from pipeline.scorers.link_lookalike import BrandChecker, skeleton
from pipeline.scorers.links import BUNDLED_BANK, LinkScorer, load_blocklist, normalize_link_entry
from pipeline.types import Message, Signal


def hosts(text: str) -> list[tuple[str, str]]:
    return [(link.host, link.path) for link in extract_links(text)]


# --- public suffixes and bare names ---------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reg"),
    [
        ("a.b.evil.co.uk", "evil.co.uk"),
        ("x.github.io", "x.github.io"),  # private section: each user's site is its own domain
        ("www.discord.com", "discord.com"),
        ("evil.example", "evil.example"),  # RFC 2606 reserved names are read as domains
        ("file.unknowntld", None),
        ("com", None),
    ],
)
def test_registrable_domain(host: str, reg: str | None) -> None:
    assert registrable_domain(host) == reg


@pytest.mark.parametrize(
    "text",
    ["see file.py", "edit readme.md and main.rs", "run setup.sh", "clip.mov", "os.path.join(a, b)", "e.g. this",
     "v1.2.3 is out", "value.toLowerCase()", "config.yaml", "Main.java"],
)  # fmt: skip
def test_dotted_words_are_not_links(text: str) -> None:
    assert hosts(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docs.rs/serde", [("docs.rs", "serde")]),  # file-like suffix, but with a path
        ("www.main.rs", [("www.main.rs", "")]),
        ("https://file.py", [("file.py", "")]),  # a scheme makes it a link whatever the suffix
        ("visit allegro.pl", [("allegro.pl", "")]),
        ("discord-nitro.gift", [("discord-nitro.gift", "")]),
        ("free at steamcommunity.com.ru/trade", [("steamcommunity.com.ru", "trade")]),
    ],
)
def test_real_bare_links_still_count(text: str, expected: list[tuple[str, str]]) -> None:
    assert hosts(text) == expected


def test_plausible_bare_host_rules() -> None:
    assert not plausible_bare_host("file.py", has_path=False)
    assert plausible_bare_host("file.py", has_path=True)
    assert not plausible_bare_host("os.path", has_path=False)
    assert plausible_bare_host("evil.ru", has_path=False)


def test_shorteners() -> None:
    assert is_shortener("clck.ru") and is_shortener("bit.ly") and is_shortener("www.tinyurl.com")
    assert not is_shortener("discord.com")


# --- the bundled bank -----------------------------------------------------------------------


def test_bundled_bank_has_provenance_and_no_whole_shorteners() -> None:
    data = json.loads(gzip.decompress(BUNDLED_BANK.read_bytes()))
    prov = data["provenance"]
    assert prov["source"].endswith("nikolaischunk/discord-phishing-links") and len(prov["sha256"]) == 64
    assert "clck.ru" in prov["dropped"]["whole_shortener"] and "clck.ru" not in data["domains"]
    assert "counter-strike.net" not in data["domains"]
    assert len(data["domains"]) == prov["entries"] > 20_000
    assert load_blocklist(BUNDLED_BANK) == data["domains"]


@pytest.fixture(scope="module")
def bank_scorer() -> LinkScorer:
    return LinkScorer(use_model=False).load()  # the bundled bank, by default


def run(scorer: LinkScorer, text: str, lists: GuildLists = EMPTY_LISTS) -> Signal:
    return scorer.score([prepare(Message(text=text), lists)])[0]


def test_default_bank_is_the_bundled_one(bank_scorer: LinkScorer) -> None:
    assert bank_scorer.status()["ok"] and bank_scorer.status()["paths"] == [str(BUNDLED_BANK)]
    assert run(bank_scorer, "https://steam-account.ru/login").definitive


def test_clck_ru_is_not_blocked_whole(bank_scorer: LinkScorer, tmp_path: Path) -> None:
    sig = run(bank_scorer, "https://clck.ru/some-news-article")
    assert not sig.definitive and sig.scores["scam"] == 0.0
    assert "shortener" in sig.evidence[0].detail
    raw = tmp_path / "upstream.json"  # the raw upstream list, whole-shortener entry and all
    raw.write_text(json.dumps({"domains": ["clck.ru", "clck.ru/bad1", "evil.example"]}))
    scorer = LinkScorer(blocklist_path=raw, use_model=False).load()
    assert not run(scorer, "clck.ru/fine").definitive
    assert run(scorer, "clck.ru/bad1").definitive and run(scorer, "evil.example").definitive
    guild = GuildLists(blocked_links=("clck.ru",))  # a guild may still block a shortener outright
    assert run(scorer, "clck.ru/fine", guild).definitive


def test_bank_build_is_reproducible(tmp_path: Path) -> None:
    from training.links.bank import build_bank
    from training.text.data import resolve_data_dir

    try:
        root = resolve_data_dir(None)
    except FileNotFoundError:
        pytest.skip("shared data not on this machine")
    out = tmp_path / "bank.json.gz"
    build_bank(root, out)
    assert out.read_bytes() == BUNDLED_BANK.read_bytes()  # the committed bank is this data's build


@pytest.mark.parametrize(
    ("entry", "canonical"),
    [("https://Evil.Example:8443/Login?x=1", "evil.example/login"), ("bit.ly/ABC/", "bit.ly/abc"),
     ("dіscord.com", "xn--dscord-pvf.com"), ("user@evil.ru", "evil.ru")],
)  # fmt: skip
def test_link_entries_are_normalised(entry: str, canonical: str) -> None:
    assert normalize_link_entry(entry) == canonical


@pytest.mark.parametrize("entry", ["not a domain", "file.unknowntld", "localhost", "com"])
def test_bad_link_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="public suffix"):
        normalize_link_entry(entry)


# --- look-alikes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checker() -> BrandChecker:
    return BrandChecker()


def kinds(checker: BrandChecker, text: str) -> list[tuple[str, str | None]]:
    return [(f.kind, f.brand) for link in extract_links(text) for f in checker.flags(link)]


@pytest.mark.parametrize(
    ("text", "kind", "brand"),
    [
        ("dіscord.com", "homoglyph", "discord"),  # Cyrillic і
        ("d1scord.com/gift", "homoglyph", "discord"),
        ("paypai.com", "homoglyph", "paypal"),
        ("dicsord-nitro.com", "near_miss", "discord"),
        ("steamcomunity.ru", "near_miss", "steamcommunity"),
        ("discord.com.gift-claim.ru", "brand_subdomain", "discord"),
        ("steam.trade-offer.io", "brand_subdomain", "steam"),
        ("evil.ru/discord-nitro", "brand_in_path", "discord"),
        ("discordnitro.gift", "brand_in_domain", "discord"),
        ("bit.ly/abc", "shortener", None),
    ],
)
def test_lookalikes(checker: BrandChecker, text: str, kind: str, brand: str | None) -> None:
    assert (kind, brand) in kinds(checker, text)


@pytest.mark.parametrize(
    "text", ["discord.com/channels/1/2", "discord.gg/abc", "steamcommunity.com/id/x", "streamlabs.com",
             "google.com", "twitch.tv/x", "steamdb.info/app/730", "top.gg/bot/1"],
)  # fmt: skip
def test_brand_domains_and_ordinary_sites_are_not_lookalikes(checker: BrandChecker, text: str) -> None:
    assert kinds(checker, text) == []


def test_skeleton_reads_what_a_person_sees() -> None:
    assert skeleton("dіscord") == skeleton("d1scord") == skeleton("discord")
    assert skeleton("rnicrosoft") == skeleton("microsoft")


def test_protected_brands_are_configurable() -> None:
    custom = BrandChecker({"heronchat": ["heron.chat"]})
    assert [f.kind for link in extract_links("heronchat-login.ru") for f in custom.flags(link)] == ["brand_in_domain"]
    assert [f.kind for link in extract_links("heronchatt.com") for f in custom.flags(link)] == ["near_miss"]
    assert custom.flags(extract_links("heron.chat")[0]) == []


# --- the learned model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> LinkModel:
    return LinkModel.load()


def test_model_separates_scam_from_popular_domains(model: LinkModel) -> None:
    scam = model.score(["free-discord-nitro.ru", "steamcommunity-trade-offer.xyz", "dlscord-gift.com"])
    benign = model.score(["google.com", "wikipedia.org", "nytimes.com", "bbc.co.uk"])
    assert scam.min() >= 0.5 and benign.max() < 0.5
    assert 0.0 <= benign.min() and scam.max() <= 0.95  # only an exact list match reaches 1.0


def test_model_metrics_meet_the_target() -> None:
    metrics = json.loads((DEFAULT_ARTIFACT_DIR / "metrics.json").read_text())
    assert metrics["test_learned"]["recall_at_1pct_fpr"] >= 0.8
    assert metrics["test_exact_match_list_at_cutoff"]["recall"] < 0.05  # future domains: lists know none


def test_score_map_is_monotone_and_anchored() -> None:
    raw = np.linspace(0, 1, 101)
    mapped = score_map(raw, 0.3, 0.7)
    assert np.all(np.diff(mapped) >= 0)
    assert score_map(np.array([0.3, 0.7, 1.0]), 0.3, 0.7).tolist() == pytest.approx([0.5, 0.8, 0.95])


def test_altered_artifact_is_refused(tmp_path: Path) -> None:
    art = tmp_path / "art"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, art)
    weights = art / "domain_model.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        LinkModel.load(art)
    cfg = json.loads((DEFAULT_ARTIFACT_DIR / "config.json").read_text())
    shutil.copy(DEFAULT_ARTIFACT_DIR / "domain_model.npz", weights)
    (art / "config.json").write_text(json.dumps({**cfg, "feature_version": 999}))
    with pytest.raises(ArtifactError, match="retrain"):
        LinkModel.load(art)


# --- the scorer with everything ---------------------------------------------------------------


@pytest.fixture(scope="module")
def full_scorer() -> LinkScorer:
    return LinkScorer().load()


def test_unknown_scam_domain_gets_a_learned_score_with_evidence(full_scorer: LinkScorer) -> None:
    sig = run(full_scorer, "claim your gift: https://nitro-gift-claim-discord.xyz/free")
    assert not sig.definitive and sig.scores["scam"] >= 0.5
    assert any("learned domain score" in e.detail for e in sig.evidence)


def test_lookalike_scores_without_any_list(full_scorer: LinkScorer) -> None:
    sig = run(full_scorer, "verify at dіscord.com/verify")
    assert sig.scores["scam"] >= 0.9 and not sig.definitive
    assert "imitates discord.com" in sig.evidence[0].detail


def test_bank_hit_is_still_definitive(full_scorer: LinkScorer) -> None:
    sig = run(full_scorer, "https://steam-account.ru/login")
    assert sig.definitive and sig.scores == {"scam": 1.0}


@pytest.mark.parametrize(
    "text", ["discord.com/channels/1/2", "https://github.com/org/repo", "www.youtube.com/watch?v=x",
             "see steamdb.info/app/730", "https://en.wikipedia.org/wiki/Heron"],
)  # fmt: skip
def test_ordinary_links_stay_below_review(full_scorer: LinkScorer, text: str) -> None:
    assert run(full_scorer, text).scores["scam"] < 0.5


def test_status_names_the_model(full_scorer: LinkScorer) -> None:
    assert full_scorer.status()["model"] == LinkModel.load().version
