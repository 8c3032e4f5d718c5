"""Host names reduced to what they belong to: public suffix, registrable domain, shortener or not.

The public-suffix list is the snapshot bundled in the `publicsuffixlist` package (no fetching at
run time; updating the package updates the list). It is read once per process, lazily, with
``accept_unknown=False`` so that a made-up suffix (``e.g``, ``os.path``) is *not* a public
suffix: only names ending in a real one can be links.

Everything here is pure and cached: the link extractor, the link scorer, the learned domain model
and its training code all call the same functions, so a host is reduced the same way everywhere.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

# Public suffixes that are far more often file extensions than sites when written without a
# scheme, a path or "www." in chat ("see file.py", "readme.md", "run setup.sh", "clip.mov"):
# such a bare name is not taken as a link. With a scheme or a path (``docs.rs/serde``) it is.
FILE_LIKE_SUFFIXES: frozenset[str] = frozenset({"py", "md", "rs", "sh", "zip", "mov", "java", "ps", "gs"})

# URL shorteners: a link through one hides where it goes, so it is flagged as such, and a bank
# entry for the whole shortener (the upstream list had ``clck.ru``) would block every short link
# on it; only entries with a path (one short link) are kept for these hosts.
SHORTENERS: frozenset[str] = frozenset(
    {
        "bit.ly", "bitly.com", "bitly.su", "bit.do", "buff.ly", "clck.ru", "cutt.ly", "cutt.us", "gg.gg",
        "goo.gl", "inlnk.ru", "is.gd", "lnkd.in", "ow.ly", "qrco.de", "rb.gy", "rebrand.ly", "s.id",
        "shorturl.at", "surl.li", "t.co", "t.ly", "tiny.cc", "tinyurl.com", "u.to", "v.gd", "zzb.bz",
        "shorte.st", "adf.ly", "short.io", "tiny.one", "urlz.fr", "vk.cc", "clc.to", "cli.re", "lnk.to",
        "linktr.ee", "link.tl", "x.co", "soo.gd", "s.coop", "tr.im", "db.tt", "qr.ae", "trib.al",
    }
)  # fmt: skip

# Protected brands for look-alike checks (`Settings.link_protected_brands` overrides): brand word ->
# the registrable domains the brand owns, which are never look-alikes of it.
DEFAULT_PROTECTED_BRANDS: dict[str, list[str]] = {
    "discord": ["discord.com", "discord.gg", "discordapp.com", "discordapp.net", "discord.media", "discord.gift",
                "discord.new", "discordstatus.com", "discord.dev", "discord.co", "dis.gd"],
    "nitro": ["discord.com", "discord.gift"],
    "steam": ["steampowered.com", "steamcommunity.com", "steamstatic.com", "steamgames.com", "steam.tv",
              "steamchina.com", "steamcontent.com", "steamusercontent.com", "steamserver.net"],
    "steamcommunity": ["steamcommunity.com"],
    "steampowered": ["steampowered.com"],
    "epicgames": ["epicgames.com", "epicgames.dev", "unrealengine.com"],
    "roblox": ["roblox.com", "rbxcdn.com", "roblox.qq.com"],
    "twitch": ["twitch.tv", "twitchcdn.net", "ttvnw.net"],
    "paypal": ["paypal.com", "paypal.me", "paypalobjects.com"],
    "hypesquad": ["discord.com"],
}  # fmt: skip

# Well-known community sites around the protected brands (bot lists, stats, libraries): brand words
# in their names are not imitation, so neither look-alike checks nor the learned model score them.
# `Settings.link_allowed_domains` adds a deployment's own.
COMMUNITY_DOMAINS: frozenset[str] = frozenset(
    {
        "top.gg", "discordbots.org", "disboard.org", "discord.js.org", "discordjs.guide", "discord.me",
        "discords.com", "discordservers.com", "discordpy.readthedocs.io", "discord.bots.gg", "bots.gg",
        "steamdb.info", "steamcharts.com", "steamspy.com", "steamgifts.com", "steamrep.com", "steamid.io",
        "steamladder.com", "steamtrades.com", "isthereanydeal.com", "rblx.trade", "rolimons.com",
        "twitchtracker.com", "streamelements.com", "streamlabs.com", "github.com", "gitlab.com",
        "youtube.com", "youtu.be", "twitter.com", "x.com", "reddit.com", "tenor.com", "giphy.com",
    }
)  # fmt: skip

# Reserved for documentation and testing (RFC 2606/6761): not in the public-suffix list, but
# names under them are meant to be read as domains (examples, test fixtures, demo configs).
RESERVED_SUFFIXES: frozenset[str] = frozenset({"example", "test", "invalid"})

_lock = threading.Lock()
_psl: PublicSuffixList | None = None


def _list() -> PublicSuffixList:
    """The bundled public-suffix list, parsed once (about 10k rules, ~50 ms) on first use."""
    global _psl
    if _psl is None:
        with _lock:
            if _psl is None:
                _psl = PublicSuffixList(accept_unknown=False)
    return _psl


@lru_cache(maxsize=65536)
def public_suffix(host: str) -> str | None:
    """The public suffix of an ASCII host (``co.uk``, ``github.io``), or None if it has none."""
    host = host.strip(".").lower()
    last = host.rsplit(".", 1)[-1]
    if last in RESERVED_SUFFIXES:
        return last
    if not host or "." not in host and not _list().is_public(host):
        return None
    return _list().publicsuffix(host)


@lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str | None:
    """The registrable domain (public suffix + one label) of an ASCII host, or None.

    ``a.b.evil.co.uk`` -> ``evil.co.uk``; ``x.github.io`` -> ``x.github.io`` (github.io is a
    public suffix in the list's private section, so each user's site is its own domain);
    ``file.unknowntld`` and a bare suffix -> None.
    """
    host = host.strip(".").lower()
    if "." not in host:
        return None
    labels = host.split(".")
    if labels[-1] in RESERVED_SUFFIXES:
        return ".".join(labels[-2:]) if labels[-2] else None
    return _list().privatesuffix(host)


def is_shortener(host: str) -> bool:
    """Whether `host` (or its registrable domain) is a known URL shortener."""
    labels = host.strip(".").lower().split(".")
    # Shorteners are registrable domains themselves, so a walk up the labels finds them without
    # the public-suffix list (this runs for every bank entry at start-up).
    return any(".".join(labels[i:]) in SHORTENERS for i in range(len(labels) - 1))


def plausible_bare_host(host: str, has_path: bool) -> bool:
    """Whether a name written without a scheme is a link rather than a word with a dot in it.

    It needs a real public suffix and a label in front of it; a file-extension-like suffix
    (``file.py``) also needs a path, a port or a ``www.`` in front.
    """
    if registrable_domain(host) is None:
        return False
    suffix = public_suffix(host) or ""
    if suffix in FILE_LIKE_SUFFIXES and not has_path and not host.startswith("www."):
        return False
    return True
