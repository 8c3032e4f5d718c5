"""Benchmark `heron moderate --input` against the bare text model, in the same run.

For N distinct tweets (default 10,000, from OLID train in the shared data folder):
- **bare**: forward passes only, on every core: one spawned single-threaded process per core, each
  with the served forward path (`serving_quantize`), the messages already normalised and
  tokenised, cut into the same length-sorted chunks (`--batch-size`, default 64, in batches of
  `HERON_TEXT_MAX_BATCH`, default 8) the batch path hands its workers; timed from the moment every
  process has loaded until the last one finishes (so it excludes start-up);
- **parallel batch path**: `heron moderate --input FILE --no-progress` as a user runs it, one model
  worker process per core, end to end: the wall time from starting the command to its exit,
  start-up included, and when the first decision line came out of its pipe;
- **single process**: the same with `--workers 0` (everything in one process, one model thread:
  the path before `pipeline/batch.py`).

The bare figure is measured before and after the two end-to-end runs; the headline ratio divides
the parallel path by their mean (this machine's speed drifts within minutes). Target (issue 22):
the parallel path at ≥ 0.8 of bare, start-up included. Writes bench/results/batch.json.

    python bench/bench_batch.py [--messages 10000] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.text.model import DEFAULT_ARTIFACT_DIR  # noqa: E402
from models.text.quantize import serving_quantize  # noqa: E402
from pipeline.batch import default_workers  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "batch.json"
HERON = str(Path(sys.executable).parent / "heron")


def load_tweets(n: int) -> list[str]:
    """`n` distinct OLID training tweets, in file order."""
    from training.text.data import olid, resolve_data_dir

    seen: set[str] = set()
    out = []
    for t in olid(resolve_data_dir(), "train").raw:
        if t not in seen:
            seen.add(t)
            out.append(t)
        if len(out) == n:
            return out
    raise SystemExit(f"only {len(out)} distinct OLID training tweets, asked for {n}")


def _bare_worker(artifact: str, quantize: str, texts: list[str], batch_size: int, ready: Any, go: Any, q: Any) -> None:
    import torch

    torch.set_num_threads(1)
    from models.text.canonical import canonicalize
    from models.text.engine import TextEngine
    from pipeline.normalize import normalize
    from pipeline.settings import get_settings

    engine = TextEngine(artifact, quantize=quantize, num_threads=1, max_batch=get_settings().text_max_batch)
    seqs = engine.encode_batch([canonicalize(normalize(t)) for t in texts])
    chunks = [seqs[i : i + batch_size] for i in range(0, len(seqs), batch_size)]
    engine.logits_from_ids(chunks[0])  # warm-up, as the batch path's workers do
    ready.release()
    go.wait()
    for chunk in chunks:
        engine.logits_from_ids(chunk)  # length-sorted batches of max_batch within the chunk
    q.put((len(seqs), time.perf_counter()))


def bare(artifact: Path, quantize: str, texts: list[str], batch_size: int, procs: int) -> dict[str, Any]:
    """Forward passes only, `procs` single-threaded processes, chunks dealt round-robin."""
    ctx = mp.get_context("spawn")
    ready, go, q = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    chunks = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    shares = [[t for c in chunks[k::procs] for t in c] for k in range(procs)]
    workers = [
        ctx.Process(target=_bare_worker, args=(str(artifact), quantize, s, batch_size, ready, go, q)) for s in shares
    ]
    for p in workers:
        p.start()
    for _ in workers:
        ready.acquire(timeout=3600)
    start = time.perf_counter()
    go.set()
    done = [q.get(timeout=3600) for _ in workers]
    for p in workers:
        p.join()
    elapsed = max(t for _, t in done) - start
    n = sum(c for c, _ in done)
    return {"messages": n, "seconds": elapsed, "msg_per_s": n / elapsed, "processes": procs}


def end_to_end(src: Path, workers: int | None, batch_size: int) -> dict[str, Any]:
    """`heron moderate --input src` as a user runs it; decisions read from its stdout pipe as they come."""
    cmd = [HERON, "moderate", "--input", str(src), "--no-progress", "--batch-size", str(batch_size)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert proc.stdout is not None
    first = None
    n = 0
    actions: dict[str, int] = {}
    for line in proc.stdout:
        if first is None:
            first = time.perf_counter() - start
        n += 1
        a = json.loads(line).get("action", "error")
        actions[a] = actions.get(a, 0) + 1
    err = proc.stderr.read() if proc.stderr else ""
    rc = proc.wait()
    elapsed = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {rc}: {err[-2000:]}")
    return {
        "command": " ".join(cmd[1:]),
        "messages": n,
        "seconds": elapsed,
        "msg_per_s": n / elapsed,
        "first_decision_s": first,
        "actions": actions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT_DIR)
    ap.add_argument("--skip-single", action="store_true", help="skip the single-process run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    cores = default_workers()
    quantize = serving_quantize(args.artifact)
    texts = load_tweets(args.messages)
    from models.text.engine import TextEngine

    TextEngine(args.artifact, quantize=quantize, num_threads=1)  # the ONNX export, once, outside every timing
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": cores, "platform": platform.platform(), "load_avg_at_start": os.getloadavg()},
        "messages": f"{len(texts)} distinct OLID train tweets (shared data), one JSON line each",
        "served_path": quantize,
        "batch_size": args.batch_size,
    }

    def save(key: str, value: Any) -> None:
        """Each phase is written as soon as it ends, so an interrupted run still leaves its figures."""
        result[key] = value
        bare_runs = [result[k]["msg_per_s"] for k in ("bare_before", "bare_after") if result.get(k)]
        if bare_runs and result.get("parallel"):
            bare_mean = sum(bare_runs) / len(bare_runs)
            single = result.get("single_process")
            result["summary"] = {
                "bare_msg_per_s_mean": bare_mean,
                "bare_runs": len(bare_runs),
                "parallel_over_bare": result["parallel"]["msg_per_s"] / bare_mean,
                "single_over_bare": single["msg_per_s"] / bare_mean if single else None,
                "parallel_over_single": result["parallel"]["msg_per_s"] / single["msg_per_s"] if single else None,
                "target_parallel_over_bare": 0.8,
            }
        result["machine"]["load_avg_last"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", "utf-8")

    with tempfile.TemporaryDirectory(prefix="heron-bench-batch-") as tmp:
        src = Path(tmp) / "messages.jsonl"
        src.write_text("".join(json.dumps({"id": f"m{i}", "text": t}) + "\n" for i, t in enumerate(texts)), "utf-8")
        print(f"{len(texts)} messages, {cores} cores, served path {quantize}", flush=True)
        save("bare_before", bare(args.artifact, quantize, texts, args.batch_size, cores))
        print(f"  bare (before): {result['bare_before']['msg_per_s']:.1f} msg/s", flush=True)
        save("parallel", end_to_end(src, None, args.batch_size))
        par = result["parallel"]
        print(
            f"  heron moderate --input (parallel): {par['msg_per_s']:.1f} msg/s, {par['seconds']:.1f} s, "
            f"first decision after {par['first_decision_s']:.1f} s",
            flush=True,
        )
        if not args.skip_single:
            save("single_process", end_to_end(src, 0, args.batch_size))
            one = result["single_process"]
            print(
                f"  heron moderate --input --workers 0 (single process): {one['msg_per_s']:.1f} msg/s, "
                f"{one['seconds']:.1f} s, first decision after {one['first_decision_s']:.1f} s",
                flush=True,
            )
        save("bare_after", bare(args.artifact, quantize, texts, args.batch_size, cores))
        print(f"  bare (after): {result['bare_after']['msg_per_s']:.1f} msg/s", flush=True)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
