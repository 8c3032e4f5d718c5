"""int8 at rest: the stored text weights, their checksum, and the served path chosen per model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from models.text import int8
from models.text.model import (
    ACT_MAX_FILE,
    CONFIG_FILE,
    DEFAULT_ARTIFACT_DIR,
    WEIGHTS_FILE,
    ArtifactConfig,
    convert_weights,
    load_artifact,
)
from models.text.quantize import FASTEST_FIRST, MAX_SERVED_LOSS, QUANTIZE_MODES, serving_quantize

needs_artifact = pytest.mark.skipif(not (DEFAULT_ARTIFACT_DIR / CONFIG_FILE).is_file(), reason="no text artifact")
MB = 1_000_000


def test_per_channel_int8_round_trip_is_within_half_a_step_per_row() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 600, generator=g) * torch.logspace(-3, 0, 64)[:, None]  # rows of very different size
    w[5] = 0.0
    stored = int8.encode(
        {
            "backbone.encoder.layer.0.intermediate.dense.weight": w,
            "head.weight": w[:3],
            "backbone.encoder.layer.0.output.LayerNorm.bias": w[0],
        }
    )
    q = stored["backbone.encoder.layer.0.intermediate.dense.weight"]
    scale = stored["backbone.encoder.layer.0.intermediate.dense.weight" + int8.SCALE_SUFFIX]
    assert q.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (64,)
    assert stored["head.weight"].dtype == torch.float32  # the head sets the logits' scale: never rounded
    back = int8.decode(stored)
    err = (back["backbone.encoder.layer.0.intermediate.dense.weight"] - w).abs()
    assert bool((err <= scale[:, None] / 2 + 1e-7).all())  # per-row step, so small rows keep their precision
    assert bool((back["backbone.encoder.layer.0.intermediate.dense.weight"][5] == 0).all())
    assert torch.equal(back["head.weight"], w[:3])


def test_decode_refuses_scales_that_do_not_fit_their_matrix() -> None:
    stored = int8.encode({"backbone.x.weight": torch.randn(256, 256)})
    stored["backbone.x.weight" + int8.SCALE_SUFFIX] = torch.ones(3)
    with pytest.raises(ValueError, match="backbone.x.weight"):
        int8.decode(stored)


@needs_artifact
def test_committed_weights_are_int8_at_rest_and_within_the_size_caps() -> None:
    cfg = ArtifactConfig.from_file(DEFAULT_ARTIFACT_DIR / CONFIG_FILE)
    weights = DEFAULT_ARTIFACT_DIR / WEIGHTS_FILE
    assert cfg.weights["format"] == int8.INT8_FORMAT == int8.file_format(weights)
    assert cfg.weights["sha256"] == int8.sha256_file(weights)
    assert weights.stat().st_size < 12 * MB  # the cap is 15 MB per file
    models_dir = DEFAULT_ARTIFACT_DIR.parents[1]
    files = [p for p in models_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert all(p.stat().st_size <= 15 * MB for p in files), [p for p in files if p.stat().st_size > 15 * MB]
    assert sum(p.stat().st_size for p in files) <= 40 * MB


@needs_artifact
def test_weights_that_do_not_match_the_config_checksum_are_refused(tmp_path: Path) -> None:
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copy(DEFAULT_ARTIFACT_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (tmp_path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 .*config.json expects"):
        load_artifact(tmp_path)


@needs_artifact
def test_an_fp16_artifact_still_loads_and_scores_like_the_int8_one(tmp_path: Path) -> None:
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copy(DEFAULT_ARTIFACT_DIR / name, tmp_path / name)
    sizes = convert_weights(tmp_path, int8.FP16_FORMAT)
    assert sizes["before"]["format"] == int8.INT8_FORMAT and sizes["after"]["format"] == int8.FP16_FORMAT
    assert sizes["after"]["bytes"] > 1.8 * sizes["before"]["bytes"]
    a, _, tok = load_artifact(DEFAULT_ARTIFACT_DIR)
    b, _, _ = load_artifact(tmp_path)
    enc = tok(["you are a pathetic idiot", "see you at the match tonight"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        la, lb = a(enc["input_ids"], enc["attention_mask"]), b(enc["input_ids"], enc["attention_mask"])
    assert float((la - lb).abs().max()) < 1e-2  # fp16 of int8-representable values: the same model


@needs_artifact
def test_the_served_path_is_recorded_per_model_and_loses_at_most_half_a_point() -> None:
    """The choice `heron eval text` made for the served seed, read back as serving reads it."""
    cfg = ArtifactConfig.from_file(DEFAULT_ARTIFACT_DIR / CONFIG_FILE)
    serving = cfg.serving
    chosen = serving["quantize"]
    assert chosen in QUANTIZE_MODES and serving["seed"] == 0
    assert serving_quantize(DEFAULT_ARTIFACT_DIR) == chosen
    losses = serving["olid_val_loss"]
    if chosen != "fp32":
        assert losses[chosen] <= MAX_SERVED_LOSS
        faster = FASTEST_FIRST[: FASTEST_FIRST.index(chosen)]
        assert all(losses.get(m, float("inf")) > MAX_SERVED_LOSS for m in faster)  # the fastest that passes
    assert serving["reference"] == "before int8 at rest"
    assert chosen != "onnx-int8-sq" or (DEFAULT_ARTIFACT_DIR / ACT_MAX_FILE).is_file()
    metrics = json.loads((DEFAULT_ARTIFACT_DIR / "metrics.json").read_text("utf-8"))
    assert metrics["quantization"]["chosen"] == chosen
