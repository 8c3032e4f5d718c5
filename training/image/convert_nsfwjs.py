"""Convert nsfwjs's MobileNetV2 (TensorFlow.js layers model) into the torch model in models/image.

    python -m training.image.convert_nsfwjs [--npm-dir DIR] [--out models/image/artifact]

Steps: install the pinned npm packages into a cache folder (never the repository), dump the
bundled model as model.json + binary shards, dequantise the weights exactly as tfjs does
(nsfwjs ships them uint8-quantised: value = q * scale + min), transpose them into torch layouts
(Conv2D HWIO -> OIHW, DepthwiseConv2D HWC1 -> C1HW, Dense IO -> OI), check every tensor is used
once with the right shape, and write `nsfw_mobilenet_v2.safetensors` (float32) and `config.json`.
The parity with nsfwjs itself is proven by tests/unit/test_images_nsfw_parity.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from models.image.mobilenet_v2 import BN_EPS, CLASSES, INPUT_SIZE, NSFWMobileNetV2, bn_name, keras_layer_names
from models.image.nsfw import ARTIFACT_DIR, WEIGHTS_FILE
from training.image.nsfwjs_npm import NSFWJS_VERSION, TFJS_VERSION, dump_tfjs_model, ensure_nsfwjs

_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16, "float32": np.float32, "int32": np.int32}


def read_tfjs_weights(model_json: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The model.json and every weight as a float32 array, dequantised the way tfjs-core's
    `decodeWeights` does it (computed in double, stored as float32)."""
    spec = json.loads(model_json.read_text())
    weights: dict[str, np.ndarray] = {}
    for group in spec["weightsManifest"]:
        data = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = tuple(w["shape"])
            count = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            dtype = np.dtype(_DTYPES[q["dtype"] if q else w["dtype"]])
            raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += count * dtype.itemsize
            if q and q["dtype"] in ("uint8", "uint16"):
                values = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
            else:
                values = raw.astype(np.float32)
            weights[w["name"]] = values.reshape(shape)
        if offset != len(data):
            raise ValueError(f"weight group {group['paths']}: read {offset} of {len(data)} bytes")
    return spec, weights


def check_topology(spec: dict[str, Any]) -> None:
    """Refuse a model.json that is not the architecture models/image/mobilenet_v2.py implements."""
    layers = spec["modelTopology"]["model_config"]["config"]["layers"]
    for layer in layers:
        cfg = layer["config"]
        if layer["class_name"] == "BatchNormalization" and abs(cfg["epsilon"] - BN_EPS) > 1e-12:
            raise ValueError(f"{cfg['name']}: epsilon {cfg['epsilon']} != {BN_EPS}")
        if layer["class_name"] == "ReLU" and cfg.get("max_value") != 6:
            raise ValueError(f"{cfg['name']}: not ReLU6")
        if layer["class_name"] == "ZeroPadding2D" and cfg["padding"] != [[0, 1], [0, 1]]:
            raise ValueError(f"{cfg['name']}: padding {cfg['padding']}")
    shape = layers[0]["config"]["batch_input_shape"]
    if shape[1:] != [INPUT_SIZE, INPUT_SIZE, 3]:
        raise ValueError(f"input shape {shape}")
    head = [(lyr["config"]["units"], lyr["config"]["activation"]) for lyr in layers if lyr["class_name"] == "Dense"]
    if head != [(256, "relu"), (128, "relu"), (len(CLASSES), "softmax")]:
        raise ValueError(f"unexpected head {head}")


def to_state_dict(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map Keras weight names onto the torch module's state dict (shapes checked on load)."""
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return weights[name]

    state: dict[str, torch.Tensor] = {}
    for module, keras in keras_layer_names():
        if "depthwise" in keras:
            k = take(f"{keras}/depthwise_kernel")  # (kh, kw, C, 1)
            w = k.transpose(2, 3, 0, 1)  # (C, 1, kh, kw)
        else:
            k = take(f"{keras}/kernel")  # (kh, kw, in, out)
            w = k.transpose(3, 2, 0, 1)  # (out, in, kh, kw)
        state[f"{module}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        bn = bn_name(keras)
        for ours, theirs in (
            ("weight", "gamma"),
            ("bias", "beta"),
            ("running_mean", "moving_mean"),
            ("running_var", "moving_variance"),
        ):
            state[f"{module}.bn.{ours}"] = torch.from_numpy(take(f"{bn}/{theirs}").copy())
    for i in (1, 2, 3):
        state[f"fc{i}.weight"] = torch.from_numpy(np.ascontiguousarray(take(f"dense_{i}/kernel").T))
        state[f"fc{i}.bias"] = torch.from_numpy(take(f"dense_{i}/bias").copy())
    unused = set(weights) - used
    if unused:
        raise ValueError(f"tfjs weights not mapped: {sorted(unused)}")
    return state


def convert(npm_dir: Path | None, out_dir: Path) -> dict[str, Any]:
    npm_dir = ensure_nsfwjs(npm_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model_json = dump_tfjs_model(npm_dir, Path(tmp))
        spec, weights = read_tfjs_weights(model_json)
        check_topology(spec)
        sources = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(tmp).iterdir())}
    state = to_state_dict(weights)
    model = NSFWMobileNetV2()
    # strict: every parameter and buffer of the torch model comes from the tfjs weights
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"source": f"nsfwjs@{NSFWJS_VERSION} dist/models/mobilenet_v2", "license": "MIT"}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / WEIGHTS_FILE), metadata=meta)
    config = {
        "architecture": "MobileNetV2 alpha 1.0 + dense 256-128-5 (Keras 2.2.4 layout)",
        "classes": list(CLASSES),
        "input_size": INPUT_SIZE,
        "input_scale": "uint8 RGB / 255, no mean subtraction (nsfwjs NSFWJS.infer)",
        "bn_epsilon": BN_EPS,
        "source": {
            "npm": f"nsfwjs@{NSFWJS_VERSION}",
            "reference_runtime": f"@tensorflow/tfjs@{TFJS_VERSION} (cpu)",
            "model": "dist/models/mobilenet_v2 (model.min.js + group1-shard1of1.min.js)",
            "dumped_sha256": sources,
            "weights_quantization": "uint8 per tensor (dequantised: q * scale + min)",
        },
        "version": f"nsfwjs-mobilenetv2-{NSFWJS_VERSION}",
        "parameters": int(sum(v.numel() for v in state.values())),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npm-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ARTIFACT_DIR)
    args = ap.parse_args()
    config = convert(args.npm_dir, args.out)
    print(json.dumps({k: config[k] for k in ("version", "parameters")}))


if __name__ == "__main__":
    main()
