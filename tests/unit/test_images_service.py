"""The image scorers inside ModerationService: an image changes the decision, the reason names
the attachment, `model_versions` names each image scorer, an unreadable image is a missing signal.

The attachments go through the image pipeline's own decoding extractor (`DecodeExtractor`), as in
the service.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from pipeline.features import LinkExtractor, MediaExtractor, TextExtractor
from pipeline.features.decode import DecodeExtractor
from pipeline.features.stage import FeatureStage
from pipeline.scorers.image_nsfw import ImageNSFWScorer
from pipeline.scorers.image_scam import OCRScorer, QRScorer
from pipeline.scorers.links import DEFAULT_BLOCKLIST, LinkScorer, load_blocklist
from pipeline.scorers.text import TextScorer
from pipeline.service import ModerationService
from pipeline.settings import Settings
from pipeline.types import Action, Attachment, Message
from training.image.benign import SHARED_DATA, load_rgb
from training.image.synthetic import paste, png_bytes, qr_rgb


@pytest.fixture(scope="module")
def service() -> ModerationService:
    settings = Settings()
    text = TextScorer(settings=settings).load()
    scorers = [
        LinkScorer(settings=settings).load(),
        text,
        ImageNSFWScorer(settings=settings).load(),
        QRScorer(settings=settings).load(),
        OCRScorer(settings=settings, text=text).load(),
    ]
    stage = FeatureStage([TextExtractor(), LinkExtractor(), MediaExtractor(), DecodeExtractor.from_settings(settings)])
    svc = ModerationService(scorers, features=stage)
    yield svc
    svc.close()


def _attachment(rgb: np.ndarray) -> Attachment:
    return Attachment(content_base64=base64.b64encode(png_bytes(rgb)).decode(), content_type="image/png")


def test_image_only_message_with_a_phishing_qr_is_caught(service: ModerationService) -> None:
    domain = next(d for d in load_blocklist(DEFAULT_BLOCKLIST) if d == "discord-nitro.gift")
    photo = load_rgb(SHARED_DATA / "images_public_domain" / "chelsea.png")
    message = Message(attachments=[_attachment(paste(photo, qr_rgb(f"https://{domain}/gift")))])
    decision = service.decide_one("t", message)
    assert decision.action != Action.ALLOW and decision.scores["scam"] == 1.0
    assert any("attachment 0 (qr)" in r.text and domain in r.text for r in decision.reasons), decision.reasons
    assert {"image_nsfw", "image_qr", "image_ocr"} <= set(decision.model_versions)
    assert decision.missing_signals == []


def test_benign_photo_is_allowed_and_was_checked(service: ModerationService) -> None:
    photo = load_rgb(SHARED_DATA / "images_public_domain" / "coffee.png")
    decision = service.decide_one("t", Message(text="my breakfast", attachments=[_attachment(photo)]))
    assert decision.action == Action.ALLOW
    assert {"image_nsfw", "image_qr", "image_ocr"} <= set(decision.model_versions), "checked, not skipped"
    assert decision.scores["sexual"] < 0.5


def test_unreadable_image_is_never_a_silent_allow(service: ModerationService) -> None:
    bad = Attachment(content_base64=base64.b64encode(b"\x89PNG\r\n\x1a\n truncated").decode(), content_type="image/png")
    decision = service.decide_one("t", Message(attachments=[bad]))
    assert {"image_nsfw", "image_qr", "image_ocr"} <= set(decision.missing_signals)
