"""Scam images: QR codes (OpenCV) and text read by OCR (tesseract), handed to the link and text scorers.

Two scorers, one per way of reading an image, so that each can be missing on its own:

- `image_qr` (`QRScorer`): every QR code in every frame (`cv2.QRCodeDetector.detectAndDecodeMulti`).
  The payloads go to the link scorer (`pipeline.scorers.links.LinkScorer`, its public `score`),
  exactly as if the link had been typed in the message, so the platform phishing list and the
  guild's blocked links apply. A QR code for Discord's own QR login (``discord.com/ra/...``) is
  the QR-login token theft scam by itself: scanning it with the Discord app logs the *sender* in
  as the victim, so it is a definitive `scam` whatever the lists say.
- `image_ocr` (`OCRScorer`): text read with tesseract-ocr (one process per frame, sparse-text
  page segmentation, words under a confidence floor dropped). Links in that text go to the link
  scorer; the text goes to the text model (`TextScorer.score`). Without the tesseract binary the
  scorer reports itself unavailable: every image gets an error signal (a missing signal), never
  a 0.0.

Evidence names its source as ``attachment N (qr)`` / ``attachment N (ocr)`` (with the frame for
animated images). Scores: a listed link or a QR login code is ``scam`` 1.0 and definitive; OCR
text otherwise carries the text model's scores (not definitive). An image with no QR code or no
readable text gives an empty signal: nothing found is not evidence of safety.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from pipeline.features.context import ExtractedLink, Feature, ItemContext, ScoringItem
from pipeline.features.links import extract_links
from pipeline.scorers.base import Modality, Scorer
from pipeline.scorers.links import LinkScorer
from pipeline.scorers.media_frames import Frame, frames_or_signal, has_images
from pipeline.scorers.text import TextScorer
from pipeline.settings import Settings, get_settings
from pipeline.types import MAX_TEXT_CHARS, Evidence, Message, Signal

log = logging.getLogger(__name__)

# Discord's QR login ("remote auth"): the QR shown on the login page encodes discord.com/ra/<fingerprint>.
_DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com", "www.discord.com"}
)
MAX_QR_SIDE = 2048  # frames larger than this are shrunk before QR detection (time grows with pixels)
# Frames are scaled so their longer side is this long: tesseract reads captions on chat-sized
# images (300-600 px) much better enlarged, and huge photos cost time for nothing.
OCR_SIDE = 1000
# Two page-segmentation passes, their texts kept apart: 11 (sparse text) finds captions scattered
# over a photo, 3 (automatic layout) reads lines whole; on generated captions over the staged
# photos each pass missed links the other read (tests/unit/test_images_scam.py).
OCR_PAGE_MODES = (11, 3)
OCR_MIN_CONFIDENCE = 40.0
MAX_EVIDENCE = 10


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def discord_login_qr(link: ExtractedLink) -> bool:
    """A Discord QR-login (remote auth) link: discord.com/ra/<fingerprint>."""
    return link.host in _DISCORD_HOSTS and link.path.startswith("ra/")


@dataclass
class _Found:
    """What one reader found in one frame: payload texts (QR) or the recognised text (OCR)."""

    frame: Frame
    texts: list[str]


class _ImageReader(Scorer):
    """Shared batching: read every frame of every item, then hand the text to the link scorer."""

    modality: ClassVar[Modality] = Modality.IMAGE
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.MEDIA})
    reuses: ClassVar[tuple[str, ...]] = ("links",)
    via: ClassVar[str]

    def __init__(self, settings: Settings | None = None, links: LinkScorer | None = None) -> None:
        self.settings = settings or get_settings()
        # A link scorer handed in (by the caller, or by `reuse`) is loaded and closed by its owner.
        self._own_links = links is None
        self.links = links or LinkScorer(settings=self.settings)
        self._pool: ThreadPoolExecutor | None = None

    def reuse(self, peers: Mapping[str, Scorer]) -> None:
        """The service's `links` scorer, when it runs one: its lists and model are already in memory."""
        links = peers.get("links")
        if isinstance(links, LinkScorer) and self._own_links:
            self.links, self._own_links = links, False

    def _load_links(self) -> None:
        if self._own_links:
            self.links.load()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings=settings)

    def applies_to(self, item: ScoringItem) -> bool:
        return has_images(item)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def read(self, frame: Frame) -> list[str]:
        """The texts this reader finds in one frame (may raise)."""
        raise NotImplementedError

    def unavailable(self) -> str | None:
        """Why this reader cannot run at all (a missing binary), else None."""
        return None

    def _read_all(self, frames: list[Frame]) -> list[list[str] | BaseException]:
        if len(frames) <= 1 or self._workers() <= 1:
            out: list[list[str] | BaseException] = []
            for f in frames:
                try:
                    out.append(self.read(f))
                except Exception as exc:  # noqa: BLE001 - per frame
                    out.append(exc)
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers(), thread_name_prefix=f"heron-{self.name}")
        futures = [self._pool.submit(self.read, f) for f in frames]
        results: list[list[str] | BaseException] = []
        for fut in futures:
            exc = fut.exception()
            results.append(exc if exc is not None else fut.result())
        return results

    def _workers(self) -> int:
        return 1

    def link_signals(self, item: ScoringItem, texts: list[str]) -> Signal:
        """The link scorer's verdict on the links in `texts`, as if they were in the message."""
        links: list[ExtractedLink] = []
        for text in texts:
            links += extract_links(text[:MAX_TEXT_CHARS])
        probe = ScoringItem(
            Message(text=" ".join(texts)[:MAX_TEXT_CHARS]),
            tenant_id=item.tenant_id,
            lists=item.lists,
            context=ItemContext(links=tuple(links)),
        )
        return self.links.score([probe])[0]

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        started = time.perf_counter()
        if not items:
            return []
        out: list[Signal | None] = [None] * len(items)
        frames_of: dict[int, tuple[list[Frame], list[str]]] = {}
        why_not = self.unavailable()
        for i, it in enumerate(items):
            got = frames_or_signal(self, it, started)
            if isinstance(got, Signal):
                out[i] = got
                continue
            frames, unread = got
            if why_not is not None:
                out[i] = self.error_signal(why_not, started)
            elif not frames:
                out[i] = self.error_signal("no readable image: " + "; ".join(unread), started)
            else:
                frames_of[i] = (frames, unread)
        flat = [f for frames, _ in frames_of.values() for f in frames]
        results = iter(self._read_all(flat))
        for i, (frames, unread) in frames_of.items():
            found: list[_Found] = []
            failures: list[str] = []
            for f in frames:
                r = next(results)
                if isinstance(r, BaseException):
                    failures.append(f"{f.source}: {type(r).__name__}: {r}")
                elif r:
                    found.append(_Found(f, r))
            if failures and len(failures) == len(frames):
                out[i] = self.error_signal(f"{self.via} failed: " + "; ".join(failures), started)
                continue
            try:
                out[i] = self.verdict(items[i], found, unread + failures, started)
            except Exception as exc:  # noqa: BLE001
                log.exception("%s: scoring failed", self.name)
                out[i] = self.error_signal(f"{type(exc).__name__}: {exc}", started)
        return [s for s in out if s is not None]

    def verdict(self, item: ScoringItem, found: list[_Found], unread: list[str], started: float) -> Signal:
        raise NotImplementedError

    def _link_evidence(self, item: ScoringItem, found: list[_Found]) -> tuple[list[Evidence], Signal | None]:
        """Listed links among what was found, as evidence naming the frame; and any link-scorer error."""
        evidence: list[Evidence] = []
        for hit in found:
            sig = self.link_signals(item, hit.texts)
            if not sig.ok:
                return evidence, sig
            if sig.definitive and sig.scores.get("scam", 0.0) > 0.0:
                for ev in sig.evidence:
                    evidence.append(
                        Evidence(category=ev.category, detail=f"{hit.frame.source} ({self.via}): {ev.detail}")
                    )
        return evidence[:MAX_EVIDENCE], None


class QRScorer(_ImageReader):
    """QR codes in images: payloads checked by the link scorer; Discord login QR codes flagged."""

    name: ClassVar[str] = "image_qr"
    labels: ClassVar[tuple[str, ...]] = ("scam",)
    via: ClassVar[str] = "qr"

    def __init__(self, settings: Settings | None = None, links: LinkScorer | None = None) -> None:
        super().__init__(settings, links)
        self.version = "unloaded"

    def load(self, artifact_dir: Path | None = None) -> Self:
        import cv2

        self._load_links()
        self.version = f"1+opencv{cv2.__version__}+links{self.links.version}"
        return self

    def status(self) -> dict[str, Any]:
        return {"ok": True, "detail": "ok", "links": self.links.status()}

    def read(self, frame: Frame) -> list[str]:
        import cv2
        import numpy as np

        img = np.asarray(frame.pixels)
        h, w = img.shape[:2]
        if max(h, w) > MAX_QR_SIDE:
            k = MAX_QR_SIDE / max(h, w)
            img = cv2.resize(img, (max(1, int(w * k)), max(1, int(h * k))), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
        ok, payloads, _, _ = cv2.QRCodeDetector().detectAndDecodeMulti(gray)
        texts = [p for p in (payloads if ok else ()) if p]
        if not texts:  # the single-code detector finds some codes the multi detector misses
            payload, _, _ = cv2.QRCodeDetector().detectAndDecode(gray)
            texts = [payload] if payload else []
        return texts

    def verdict(self, item: ScoringItem, found: list[_Found], unread: list[str], started: float) -> Signal:
        evidence, failed = self._link_evidence(item, found)
        if failed is not None:
            return self.error_signal(f"link scorer failed: {failed.error}", started)
        for hit in found:
            for text in hit.texts:
                for link in extract_links(text[:MAX_TEXT_CHARS]):
                    if discord_login_qr(link):
                        evidence.insert(
                            0,
                            Evidence(
                                category="scam",
                                detail=f"{hit.frame.source} (qr): Discord login QR code ({link.host}/ra/…): "
                                "scanning it with the Discord app logs the sender into the scanner's account",
                            ),
                        )
        if evidence:
            return Signal(
                scorer=self.name,
                version=self.version,
                scores={"scam": 1.0},
                evidence=evidence[:MAX_EVIDENCE],
                definitive=True,
                latency_ms=_ms(started),
            )
        notes = [
            Evidence(category="scam", detail=f'{h.frame.source} (qr): QR code "{_clip(t)}" (no listed link)')
            for h in found
            for t in h.texts
        ][:MAX_EVIDENCE]
        if unread:
            notes.append(Evidence(category="scam", detail="not read: " + "; ".join(unread)))
        return Signal(scorer=self.name, version=self.version, evidence=notes, latency_ms=_ms(started))


def _compact_links(text: str) -> str:
    """OCR splits a link at its dots, hyphens and slashes (``discord- nitro. gift/x``): join a token
    that ends in one of those with the next, so the link extractor sees the link whole."""
    return re.sub(r"(?<=[\w])([.\-/])\s+(?=[\w])", r"\1", text)


class OCRScorer(_ImageReader):
    """Text in images (tesseract-ocr): links to the link scorer, the text to the text model."""

    name: ClassVar[str] = "image_ocr"
    via: ClassVar[str] = "ocr"

    # The text model's categories plus `scam` (listed links). Scores outside these are dropped,
    # so a text model with more heads (new categories) cannot break the contract.
    # Every category the text model scores (its trained heads and the taxonomy heads, scam among them).
    labels: ClassVar[tuple[str, ...]] = tuple(dict.fromkeys((*TextScorer.labels, "scam")))

    reuses: ClassVar[tuple[str, ...]] = ("links", "text")

    def __init__(
        self,
        settings: Settings | None = None,
        links: LinkScorer | None = None,
        text: Scorer | None = None,
        tesseract: str | None = None,
    ) -> None:
        super().__init__(settings, links)
        self.text = text
        self._own_text = False  # True once `load` builds its own (closed with this scorer)
        self.tesseract = tesseract if tesseract is not None else (shutil.which("tesseract") or "")
        self.lang = self.settings.image_ocr_lang
        self.timeout_s = self.settings.image_ocr_timeout_s
        self.version = "unloaded"
        self._tesseract_version: str | None = None

    def _workers(self) -> int:
        return self.settings.image_ocr_workers

    def unavailable(self) -> str | None:
        if not self.tesseract or not Path(self.tesseract).exists():
            return "OCR unavailable: the tesseract-ocr binary is not installed (make system-deps)"
        return None

    def reuse(self, peers: Mapping[str, Scorer]) -> None:
        """The service's text scorer when `text` is configured: one text model in memory (and one
        load at start-up) serves both the messages and the text read from their images."""
        super().reuse(peers)
        text = peers.get("text")
        if isinstance(text, TextScorer) and self.text is None:
            self.text = text

    def load(self, artifact_dir: Path | None = None) -> Self:
        self._load_links()
        if self.text is None:  # no `text` scorer in this process: OCR brings its own
            self.text = TextScorer.from_settings(self.settings).load()
            self._own_text = True
        if self.unavailable() is None:
            import pytesseract

            pytesseract.pytesseract.tesseract_cmd = self.tesseract
            self._tesseract_version = str(pytesseract.get_tesseract_version())
        ocr = f"tesseract{self._tesseract_version}" if self._tesseract_version else "tesseract-missing"
        self.version = f"1+{ocr}+text:{self.text.version}"
        return self

    def status(self) -> dict[str, Any]:
        why = self.unavailable()
        return {
            "ok": why is None,
            "detail": why or "ok",
            "tesseract": self.tesseract or None,
            "links": self.links.status(),
        }

    def close(self) -> None:
        super().close()
        if self.text is not None and self._own_text:
            self.text.close()

    def read(self, frame: Frame) -> list[str]:
        import cv2
        import numpy as np
        import pytesseract

        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one core per tesseract process; we run several
        img = np.asarray(frame.pixels)
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
        h, w = gray.shape[:2]
        k = OCR_SIDE / max(h, w)
        if abs(k - 1) > 0.05:
            gray = cv2.resize(
                gray,
                (max(1, int(w * k)), max(1, int(h * k))),
                interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC,
            )
        texts: list[str] = []
        for psm in OCR_PAGE_MODES:
            data = pytesseract.image_to_data(
                gray, lang=self.lang, config=f"--psm {psm}", timeout=self.timeout_s, output_type=pytesseract.Output.DICT
            )
            lines: dict[tuple[int, int, int], list[str]] = {}
            for word, conf, block, par, line in zip(
                data["text"], data["conf"], data["block_num"], data["par_num"], data["line_num"], strict=True
            ):
                if word.strip() and float(conf) >= OCR_MIN_CONFIDENCE and any(c.isalnum() for c in word):
                    lines.setdefault((block, par, line), []).append(word.strip())
            text = "\n".join(" ".join(ws) for ws in lines.values())
            if text.strip() and text not in texts:
                texts.append(text)
        return texts

    def verdict(self, item: ScoringItem, found: list[_Found], unread: list[str], started: float) -> Signal:
        texts = [t for h in found for t in h.texts]
        if not texts:
            notes = [Evidence(category="scam", detail="not read: " + "; ".join(unread))] if unread else []
            return Signal(scorer=self.name, version=self.version, evidence=notes, latency_ms=_ms(started))
        compact = [
            _Found(h.frame, list(dict.fromkeys([*h.texts, *(_compact_links(t) for t in h.texts)]))) for h in found
        ]
        evidence, failed = self._link_evidence(item, compact)
        if failed is not None:
            return self.error_signal(f"link scorer failed: {failed.error}", started)
        read = "; ".join(f'{h.frame.source} (ocr) read "{_clip(" ".join(h.texts), 120)}"' for h in found)
        if evidence:
            # A listed link is definitive; the text model's scores would become floors in a
            # definitive signal, so they are left out (the link already decides `scam`).
            evidence.append(Evidence(category="scam", detail=read))
            return Signal(
                scorer=self.name,
                version=self.version,
                scores={"scam": 1.0},
                evidence=evidence[:MAX_EVIDENCE],
                definitive=True,
                latency_ms=_ms(started),
            )
        assert self.text is not None
        joined = "\n".join(texts)[:MAX_TEXT_CHARS]
        sig = self.text.score([ScoringItem(Message(text=joined), tenant_id=item.tenant_id, lists=item.lists)])[0]
        if not sig.ok:
            return self.error_signal(f"text model failed on the image text: {sig.error}", started)
        scores = {k: v for k, v in sig.scores.items() if k in self.labels}
        evidence = [
            Evidence(category=ev.category, detail=f"{read}: {ev.detail}")
            for ev in sig.evidence
            if ev.category in self.labels
        ][:MAX_EVIDENCE]
        if unread:
            evidence.append(
                Evidence(category=evidence[0].category if evidence else "scam", detail="not read: " + "; ".join(unread))
            )
        return Signal(scorer=self.name, version=self.version, scores=scores, evidence=evidence, latency_ms=_ms(started))
