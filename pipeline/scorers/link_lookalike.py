"""Look-alike checks of a link's host against protected brands, and shortener flags.

Phishing links imitate a few brands (Discord, Nitro, Steam, ...). A host that is not one of the
brand's own domains but *reads* like it is a strong sign, and needs no list entry:

- **homoglyphs**: Unicode letters that look like ASCII ones (``dіscord.com`` with a Cyrillic ``і``;
  read from Unicode's confusables table via `pipeline.normalize`) and ASCII swaps (``d1scord``,
  ``rn`` for ``m``): the host's *skeleton* equals a brand or one of its domains;
- **edit distance**: a label within one or two edits of a brand (``dicsord``, ``steamcomunity``),
  for brands long enough that such a near-miss is rarely an ordinary word (7+ letters; shorter
  brands only by homoglyphs, so ``stream`` is not ``steam``);
- **brand in a subdomain** (``discord.com.gift-claim.ru``, ``steam.trade-offer.io``) and **in the
  path** (``evil.ru/discord-nitro``): weaker, the path only as evidence.

A brand word inside a non-brand registrable domain (``discord-gift.com`` but also the legitimate
``steamdb.info``) is *evidence* here; its score comes from the learned model, which has seen
both kinds. URL shorteners are flagged (their target is hidden) without a score.

Brands come from `Settings.link_protected_brands`: brand word -> its own registrable domains.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz.distance import OSA

from pipeline.features.context import ExtractedLink
from pipeline.features.domains import (
    COMMUNITY_DOMAINS,
    DEFAULT_PROTECTED_BRANDS,
    is_shortener,
    public_suffix,
    registrable_domain,
)
from pipeline.normalize import _confusables_map

# ASCII swaps that read as letters in a host name; digits first, then letter pairs.
_ASCII_SWAPS = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "$": "s"})
_PAIR_SWAPS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


@dataclass(frozen=True)
class LinkFlag:
    """One look-alike or shortener finding for a link: what, how strong (0..1), and why."""

    kind: str  # homoglyph | near_miss | brand_subdomain | brand_in_domain | brand_in_path | shortener
    brand: str | None
    score: float
    detail: str


@lru_cache(maxsize=8192)
def _unicode_host(host: str) -> str:
    """The Unicode form of a punycode host (``xn--dscord-pvf.com`` -> ``dіscord.com``)."""
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = label.encode("ascii").decode("idna")
            except UnicodeError:
                pass
        labels.append(label)
    return ".".join(labels)


def skeleton(text: str) -> str:
    """What `text` looks like: confusables to ASCII, digit swaps, 'rn' -> 'm', 'i' and 'l' merged."""
    s = text.translate(_confusables_map()).lower().translate(_ASCII_SWAPS)
    for a, b in _PAIR_SWAPS:
        s = s.replace(a, b)
    return s.replace("i", "l")


class BrandChecker:
    """Runs the look-alike checks of one brand configuration; cheap, pure and cached per host."""

    def __init__(self, brands: Mapping[str, Sequence[str]] | None = None, allowed: Sequence[str] = ()) -> None:
        """`brands`: brand word -> its own registrable domains; `allowed`: more registrable domains
        that are never flagged (on top of `COMMUNITY_DOMAINS`)."""
        self.brands = {
            b.lower(): tuple(d.lower() for d in ds) for b, ds in (brands or DEFAULT_PROTECTED_BRANDS).items()
        }
        self.official = frozenset(d for ds in self.brands.values() for d in ds)
        # Domains neither checked here nor scored by the learned model: the brands' own and known community sites.
        self.trusted = self.official | COMMUNITY_DOMAINS | {d.strip().lower() for d in allowed}
        self._skeletons = {b: skeleton(b) for b in self.brands}
        self._official_skeletons = {skeleton(d): d for d in self.official}
        self._check_host = lru_cache(maxsize=16384)(self._host_flags)

    def flags(self, link: ExtractedLink) -> list[LinkFlag]:
        """Findings for one link, strongest first (empty for brand-owned and plain hosts)."""
        out = list(self._check_host(link.host))
        reg = registrable_domain(link.host) or link.host
        if reg not in self.trusted and link.path and not any(f.brand for f in out):
            path = link.path.replace("-", "").replace("_", "")
            for brand in self.brands:
                if len(brand) >= 5 and brand in path:
                    out.append(LinkFlag("brand_in_path", brand, 0.0, f'"{brand}" in the path of {reg}'))
                    break
        return sorted(out, key=lambda f: -f.score)

    def _host_flags(self, host: str) -> tuple[LinkFlag, ...]:
        out: list[LinkFlag] = []
        if is_shortener(host):
            out.append(
                LinkFlag("shortener", None, 0.0, f"URL shortener {registrable_domain(host) or host}: target hidden")
            )
            return tuple(out)
        reg = registrable_domain(host) or host
        if reg in self.trusted or host in self.trusted:
            return ()
        uni = _unicode_host(host)
        uni_reg = _unicode_host(reg)
        suffix = public_suffix(host) or reg.rsplit(".", 1)[-1]
        # 1. The whole registrable domain reads as a brand's own domain: dіscord.com, d1scord.com.
        twin = self._official_skeletons.get(skeleton(uni_reg))
        if twin is not None:
            return (LinkFlag("homoglyph", self._brand_of(twin), 0.95, f'"{uni_reg}" imitates {twin}'),)
        label = uni_reg[: -len(suffix) - 1] if uni_reg.endswith("." + suffix) else uni_reg.split(".")[0]
        parts = [p for p in re.split(r"[.\-_]", label) if p] + ([label.replace("-", "")] if "-" in label else [])
        sub = uni[: -len(uni_reg) - 1] if uni.endswith("." + uni_reg) else ""
        for brand, skel in self._skeletons.items():
            for p in parts:
                ps = skeleton(p)
                if p == brand:
                    out.append(LinkFlag("brand_in_domain", brand, 0.0, f'brand "{brand}" in {reg}, not its domain'))
                    break
                if ps == skel:
                    out.append(LinkFlag("homoglyph", brand, 0.9, f'"{p}" in {reg} imitates "{brand}"'))
                    break
                if len(brand) >= 7 and len(p) >= 5:
                    d = OSA.distance(ps, skel)
                    if 0 < d <= (2 if len(brand) >= 10 else 1):
                        out.append(LinkFlag("near_miss", brand, 0.85, f'"{p}" in {reg} is {d} edit(s) from "{brand}"'))
                        break
            else:
                if brand in label.replace("-", "") and len(brand) >= 5:
                    out.append(LinkFlag("brand_in_domain", brand, 0.0, f'brand "{brand}" in {reg}, not its domain'))
            if sub and skel in skeleton(sub.replace("-", "")):
                embedded = any(d in sub for d in self.brands[brand])
                score = 0.9 if embedded else 0.7
                what = "a brand domain" if embedded else f'"{brand}"'
                out.append(LinkFlag("brand_subdomain", brand, score, f"{what} in the subdomain of {reg}: {host}"))
        return tuple(out)

    def _brand_of(self, domain: str) -> str:
        return next(b for b, ds in self.brands.items() if domain in ds)
