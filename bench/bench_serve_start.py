"""`heron serve` start-up: seconds until `/healthz` answers and resident memory then, for two
source trees in the same run, so a change to what the service loads is measured against the
code before it on the same machine and load.

    git archive <before> | tar -x -C /tmp/heron-before
    python bench/bench_serve_start.py --baseline /tmp/heron-before [--candidate .] [--rounds 3]

`/healthz` answers once the lifespan has loaded and warmed every scorer (`ModerationService.warm_up`),
so the time is what an operator waits for; the CPU seconds the process used until then are also
recorded, as wall time on a shared machine moves with other jobs' load. RSS is the serving
process's (and any children's) `VmRSS` once it answers, plus the peak (`VmHWM`). Each round
starts both trees one after the other (alternating which goes first), each on its own fresh
SQLite database, embedded runtime (no Redis), `OMP_NUM_THREADS=1`. Medians over the rounds, and
candidate / baseline ratios.

Writes bench/results/serve_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCORERS = '["rules", "links", "text", "behaviour", "image_hash", "image_nsfw", "image_qr", "image_ocr"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _usage(pid: int) -> tuple[float, float, float]:
    """(RSS MiB, peak RSS MiB, CPU seconds user+sys) of the process and its children."""
    proc = psutil.Process(pid)
    rss = peak = cpu = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        status = Path(f"/proc/{p.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss += int(fields["VmRSS"].split()[0]) / 1024
        peak += int(fields["VmHWM"].split()[0]) / 1024
        times = p.cpu_times()
        cpu += times.user + times.system
    return rss, peak, cpu


def start_once(tree: Path, scorers: str, timeout: float = 300.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "HERON_DATABASE_URL": f"sqlite:///{tmp}/heron.db",
            "HERON_SCORERS": scorers,
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("HERON_REDIS_URL", None)
        cli = [sys.executable, "-c", "from pipeline.cli import main; main()"]
        subprocess.run([*cli, "migrate"], env=env, cwd=tree, check=True, capture_output=True)
        port = free_port()
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            started = time.perf_counter()
            proc = subprocess.Popen([*cli, "serve", "--port", str(port), "--no-migrate", "--log-level", "warning"],
                                    env=env, cwd=tree, stdout=out, stderr=subprocess.STDOUT)
            try:
                deadline = started + timeout
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.perf_counter() > deadline:
                        raise RuntimeError("serve did not answer in time:\n" + log.read_text()[-3000:])
                    time.sleep(0.05)
                seconds = time.perf_counter() - started
                _, _, cpu = _usage(proc.pid)
                time.sleep(0.5)  # let the start-up threads settle before reading memory
                rss, peak, _ = _usage(proc.pid)
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return {"start_s": seconds, "start_cpu_s": cpu, "rss_mib": rss, "peak_rss_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="source tree of the code before the change")
    ap.add_argument("--candidate", type=Path, default=ROOT, help="source tree of the change (default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scorers", default=DEFAULT_SCORERS, help="HERON_SCORERS for both (default: the default list)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_start.json")
    args = ap.parse_args()
    trees = {"baseline": args.baseline.resolve(), "candidate": args.candidate.resolve()}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            got = start_once(trees[name], args.scorers)
            runs[name].append(got)
            print(f"round {r + 1} {name:9s} start {got['start_s']:6.2f} s  cpu {got['start_cpu_s']:6.2f} s  "
                  f"rss {got['rss_mib']:7.1f} MiB  peak {got['peak_rss_mib']:7.1f} MiB", flush=True)
    med = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in runs.items()}
    ratio = {m: med["candidate"][m] / med["baseline"][m] for m in med["baseline"]}
    for name in trees:
        print(f"median {name:9s} start {med[name]['start_s']:6.2f} s  cpu {med[name]['start_cpu_s']:6.2f} s  "
              f"rss {med[name]['rss_mib']:7.1f} MiB  peak {med[name]['peak_rss_mib']:7.1f} MiB")
    print("candidate / baseline: " + "  ".join(f"{m} {v:.3f}" for m, v in ratio.items()))
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                    "python": platform.python_version()},
        "scorers": json.loads(args.scorers), "rounds": args.rounds, "trees": {k: str(v) for k, v in trees.items()},
        "runs": runs, "median": med, "ratio_candidate_over_baseline": ratio,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
