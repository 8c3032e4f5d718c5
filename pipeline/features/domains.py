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
    return _list().privatesuffix(host)


def is_shortener(host: str) -> bool:
    """Whether `host` (or its registrable domain) is a known URL shortener."""
    host = host.strip(".").lower()
    return host in SHORTENERS or (registrable_domain(host) or "") in SHORTENERS


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
