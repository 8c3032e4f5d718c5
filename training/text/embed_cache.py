"""Pooled embeddings of training/evaluation texts from the served encoder, computed once and cached.

Why a cache: the taxonomy heads sit on the frozen pooled vector, so every experiment (3 seeds,
baselines, head kinds) reuses the same ~40k embeddings; on 2 shared cores they take minutes to
compute, and seconds to load. The cache is keyed by the encoder artifact's version and the
input-form versions, so a retrained encoder never reads stale vectors. Texts are model texts
(normalised + canonicalised, `models.text.canonical.model_text`) truncated at the artifact's
max_length tokens, exactly what serving reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.text.canonical import CANONICAL_VERSION
from models.text.model import DEFAULT_ARTIFACT_DIR, load_artifact
from pipeline.normalize import NORMALIZER_VERSION


def cache_file(cache_dir: Path, artifact_dir: Path) -> Path:
    cfg = (artifact_dir / "config.json").read_text("utf-8")
    key = hashlib.sha256(f"{cfg}|{NORMALIZER_VERSION}|{CANONICAL_VERSION}".encode()).hexdigest()[:16]
    return cache_dir / f"pooled_{key}.npz"


def _key(text: str) -> str:
    """Cache key of one model text: its sha1 (a fixed-width key; long Reddit posts as numpy
    strings made the file hundreds of MB)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _save(path: Path, known: dict[str, np.ndarray]) -> None:
    keys = list(known)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array(keys), emb=np.stack([known[k] for k in keys]))
    tmp.replace(path)


def _load(path: Path) -> dict[str, np.ndarray]:
    z = np.load(path, allow_pickle=False)
    keys = z["keys"].tolist() if "keys" in z.files else [_key(t) for t in z["texts"].tolist()]
    return dict(zip(keys, z["emb"], strict=True))


def embed_texts(model_texts: Sequence[str], cache_dir: Path, artifact_dir: Path = DEFAULT_ARTIFACT_DIR,
                batch_size: int = 64, verbose: bool = True) -> np.ndarray:
    """(n, hidden) fp32 pooled embeddings for model-ready texts, computing only uncached ones."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_file(cache_dir, artifact_dir)
    known: dict[str, np.ndarray] = _load(path) if path.is_file() else {}
    todo = sorted({t for t in model_texts if _key(t) not in known})
    if todo:
        model, config, _ = load_artifact(artifact_dir)
        from tokenizers import Tokenizer

        from models.text.model import backbone_dir

        tok = Tokenizer.from_file(str(backbone_dir() / "tokenizer.json"))
        tok.enable_truncation(config.max_length)
        tok.no_padding()
        ids = [e.ids for e in tok.encode_batch(todo)]
        order = np.argsort([len(s) for s in ids], kind="stable")
        out = np.zeros((len(todo), model.backbone.config.hidden_size), dtype=np.float32)
        done: list[int] = []
        with torch.inference_mode():
            for n, start in enumerate(range(0, len(order), batch_size)):
                idx = order[start:start + batch_size]
                width = max(len(ids[i]) for i in idx)
                t_ids = torch.zeros((len(idx), width), dtype=torch.long)
                t_mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    t_ids[r, : len(ids[i])] = torch.tensor(ids[i])
                    t_mask[r, : len(ids[i])] = 1
                out[idx] = model.pool(t_ids, t_mask).float().numpy()
                done.extend(int(i) for i in idx)
                if n % 20 == 19:  # checkpoint: an interrupted run keeps what it computed
                    known.update((_key(todo[i]), out[i]) for i in done)
                    _save(path, known)
                    done.clear()
                    if verbose:
                        print(f"embedded {start + len(idx)}/{len(todo)}", flush=True)
        known.update(zip(map(_key, todo), out, strict=True))
        _save(path, known)
    return np.stack([known[_key(t)] for t in model_texts]) if model_texts else np.zeros((0, 384), np.float32)


def embed_window_means(model_texts: Sequence[str], cache_dir: Path, artifact_dir: Path = DEFAULT_ARTIFACT_DIR,
                       max_windows: int | None = None, batch_size: int = 64, verbose: bool = True) -> np.ndarray:
    """(n, hidden) mean of the pooled embeddings of each text's windows (`models.text.heads.window_ids`),
    exactly as serving computes it. Window 0 is the text's ordinary cached embedding; the other
    windows are cached under the text's key + window number, so only long texts cost extra passes."""
    from tokenizers import Tokenizer

    from models.text.heads import MAX_WINDOWS, window_ids
    from models.text.model import backbone_dir, load_config

    config = load_config(artifact_dir, skip_backbone_files=("model.safetensors",))
    tok = Tokenizer.from_file(str(backbone_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    first = embed_texts(model_texts, cache_dir, artifact_dir, batch_size, verbose)
    if not model_texts:
        return first
    wins = {t: window_ids(e.ids, config.max_length, max_windows or MAX_WINDOWS)
            for t, e in zip(model_texts, tok.encode_batch(list(model_texts)), strict=True)}
    path = cache_file(cache_dir, artifact_dir).with_name(cache_file(cache_dir, artifact_dir).stem + "_windows.npz")
    known: dict[str, np.ndarray] = _load(path) if path.is_file() else {}
    todo = sorted({(_key(t) + f":{k}", tuple(w)) for t, ws in wins.items() for k, w in enumerate(ws) if k > 0
                   and _key(t) + f":{k}" not in known})
    if todo:
        model, _, _ = load_artifact(artifact_dir)
        order = np.argsort([len(w) for _, w in todo], kind="stable")
        with torch.inference_mode():
            for n, start in enumerate(range(0, len(order), batch_size)):
                idx = order[start:start + batch_size]
                width = max(len(todo[i][1]) for i in idx)
                t_ids = torch.zeros((len(idx), width), dtype=torch.long)
                t_mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    t_ids[r, : len(todo[i][1])] = torch.tensor(todo[i][1])
                    t_mask[r, : len(todo[i][1])] = 1
                pooled = model.pool(t_ids, t_mask).float().numpy()
                known.update((todo[i][0], pooled[r]) for r, i in enumerate(idx))
                if n % 20 == 19:
                    _save(path, known)
                    if verbose:
                        print(f"embedded windows {start + len(idx)}/{len(todo)}", flush=True)
        _save(path, known)
    out = first.copy()
    for i, t in enumerate(model_texts):
        extra = [known[_key(t) + f":{k}"] for k in range(1, len(wins[t]))]
        if extra:
            out[i] = np.mean([first[i], *extra], axis=0)
    return out
