"""Service-level benchmark: the text model through Heron's HTTP API and through Celery on Redis,
beside the bare model and a naive per-request baseline measured in the same run.

Measured, one after another on this machine:
1. bare model (ONNX int8, length-sorted batches of 32, two one-thread processes and one
   two-thread process; the best is the denominator) and batch-1 latency;
2. the naive baseline: per-request fp32 transformers forward, no batching;
3. `POST /v1/moderate`, one message per HTTP request, every message distinct (the repeat cache
   never helps): saturation throughput with `wrk`, then latency at half of saturation (wrk with
   a per-connection delay, so the offered rate is fixed);
4. `POST /v1/messages` through Redis and `heron worker` processes into PostgreSQL: messages decided
   per second end to end.

Needs `wrk` (Debian package; `make bench` installs it) plus the machine's Redis and PostgreSQL for
part 4. Writes bench/results/service.json and prints a table with the ratios the issue targets.

    python bench/bench_service.py [--seconds 10] [--workers 2] [--api-procs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "service.json"
PG_ADMIN = os.environ.get("HERON_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("HERON_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lua_script(path: Path, texts: list[str], route: str, delay_ms: float | None, tag: str) -> None:
    """A wrk script that sends every request a distinct message (text + run tag + counter).

    Why the tag: every wrk run starts its counter at 0 and its Lua `math.random` from the same
    seed, so without it a run repeats the previous run's messages, and the scorer's repeat cache
    answers them without a forward pass (until 2026-12-02 the saturation run after a warm-up got
    about a quarter of its requests from the cache, and the half-saturation run more)."""
    lines = ["local texts = {"]
    lines += ["  " + json.dumps(json.dumps(t)[1:-1]) + "," for t in texts]
    lines.append("}")
    lines.append("local n = 0")
    lines.append('wrk.method = "POST"')
    lines.append(f'wrk.path = "{route}"')
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines.append('wrk.headers["Authorization"] = "Bearer " .. os.getenv("HERON_KEY")')
    lines.append("request = function()")
    lines.append("  n = n + 1")
    lines.append("  local t = texts[(n % #texts) + 1]")
    lines.append(
        f'  return wrk.format(nil, nil, nil, \'{{"text":"\' .. t .. \' #{tag}\' .. n .. \'"}}\')'
    )
    lines.append("end")
    if delay_ms is not None:
        lines.append(f"delay = function() return {delay_ms:.3f} end")
    lines.append("done = function(summary, latency, requests)")
    lines.append('  io.write(string.format("P50_US %d\\nP99_US %d\\n",')
    lines.append("    latency:percentile(50), latency:percentile(99)))")
    lines.append('  io.write(string.format("ERRORS %d\\n", summary.errors.status + summary.errors.timeout'
                 ' + summary.errors.connect + summary.errors.read + summary.errors.write))')
    lines.append("end")
    path.write_text("\n".join(lines) + "\n", "utf-8")


def half_saturation_run(url: str, script: Path, messages: list[str], target: float, seconds: float, key: str,
                        counted: bool, connections: int = 8) -> dict[str, Any]:
    """Latency at a fixed offered rate: `connections` wrk connections, each pausing between requests.

    wrk pauses `delay` after each response, so a connection's cycle is the pause plus the response
    time and the rate falls short of connections/delay by the latency (before 2026-12-03 this run
    offered 111 req/s where half of saturation was 140). Up to two more runs shorten the pause by
    the measured shortfall until the rate is within 5 % of the target; the last run is reported,
    each with its own message tag so that none is answered from the repeat cache."""
    delay_ms = 1000 * connections / target
    for attempt in range(3):
        lua_script(script, messages, "/v1/moderate", delay_ms=delay_ms, tag=f"h{attempt}")
        before = server_metrics(url)["text"] if counted else None
        half: dict[str, Any] = run_wrk(url, script, seconds, connections, key)
        if before is not None:
            half["model"] = model_work(before, server_metrics(url)["text"], half["requests"])
        achieved = half["requests_per_s"]
        half.update(target_rate=round(target, 2), delay_ms=round(delay_ms, 3), runs=attempt + 1)
        if achieved >= 0.95 * target or achieved <= 0 or delay_ms <= 0:
            break
        delay_ms = max(0.0, delay_ms - 1000 * connections * (1 / achieved - 1 / target))
    return half


def run_wrk(url: str, script: Path, seconds: float, connections: int, key: str) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or run `make bench`)")
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, env={**os.environ, "HERON_KEY": key}, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": rps,
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "p50_ms": int(re.search(r"P50_US (\d+)", out).group(1)) / 1000,  # type: ignore[union-attr]
        "p99_ms": int(re.search(r"P99_US (\d+)", out).group(1)) / 1000,  # type: ignore[union-attr]
        "errors": int(re.search(r"ERRORS (\d+)", out).group(1)),  # type: ignore[union-attr]
    }


class Server:
    def __init__(self, env: dict[str, str], port: int, procs: int, log: Path) -> None:
        self.log = log.open("w")
        self.port = port
        self.proc = subprocess.Popen(
            [str(BIN / "heron"), "serve", "--port", str(port), "--no-migrate", "--log-level", "warning",
             "--workers", str(procs)],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"heron serve exited; see {log}")
            time.sleep(0.5)
        raise SystemExit(f"heron serve not ready; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def base_env(db_url: str, redis_url: str | None) -> dict[str, str]:
    env = {**os.environ, "HERON_DATABASE_URL": db_url, "HERON_SCORERS": '["rules","links","text"]',
           "HERON_SYNC_BUDGET_MS": "5000", "HERON_TEXT_THREADS": "1", "OMP_NUM_THREADS": "1",
           # No rate limits: saturation from one key is the point here, and a faster machine than
           # this one would pass the 500/second default (bench_flood.py measures shedding instead).
           "HERON_RATE_LIMIT_PER_KEY": "", "HERON_RATE_LIMIT_PER_GUILD": ""}
    env.pop("HERON_REDIS_URL", None)
    if redis_url:
        env["HERON_REDIS_URL"] = redis_url
    return env


def make_key(env: dict[str, str]) -> str:
    subprocess.run([str(BIN / "heron"), "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    out = subprocess.run([str(BIN / "heron"), "keys", "create", "--tenant", "bench"], env=env, cwd=ROOT,
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def bare_figures(messages: list[str], seconds: float) -> dict[str, Any]:
    """The denominators, measured now: best bare throughput, batch-1 latency, naive baseline."""
    from bench_text import bare_rows, naive_rows, onnx_modes, two_process_onnx

    from models.text.engine import TextEngine
    from models.text.model import DEFAULT_ARTIFACT_DIR
    from pipeline.scorers.base import ScoringItem
    from pipeline.scorers.text import TextScorer
    from pipeline.types import Message

    model_texts = [TextScorer.model_text(ScoringItem(Message(text=t))) for t in messages]
    rows: list[dict[str, Any]] = []
    seqs: list[list[int]] = []
    for mode in onnx_modes(DEFAULT_ARTIFACT_DIR):
        engine = TextEngine(DEFAULT_ARTIFACT_DIR, quantize=mode, num_threads=2, max_batch=32)
        seqs = seqs or engine.encode_batch(model_texts)
        rows += bare_rows(engine, f"{mode} (2 threads)", seqs, seconds)
        rows.append(two_process_onnx(DEFAULT_ARTIFACT_DIR, seqs, seconds, mode))
    torch_int8 = TextEngine(DEFAULT_ARTIFACT_DIR, quantize="torch-int8", num_threads=2, max_batch=32)
    torch_rows = bare_rows(torch_int8, "torch-int8 (2 threads)", seqs, seconds)
    rows += [r for r in torch_rows if "length-sorted" in r["name"]]
    naive = naive_rows(DEFAULT_ARTIFACT_DIR, messages, seconds, callers=1)
    best = max(rows, key=lambda r: r["msg_per_s"])
    batch1 = min((r for r in rows if r["name"].endswith("batch 1")), key=lambda r: r["p50_ms"], default=None)
    return {"rows": rows, "naive": naive, "best": best, "batch1": batch1}


def thread_role(thread: str) -> str:
    """Which part of the server a thread name belongs to, for the CPU split."""
    if thread.startswith("text-batcher-"):
        return "model"
    return {"MainThread": "event loop", "heron-decision-writer": "decision writer"}.get(thread, "other threads")


def server_metrics(url: str) -> dict[str, dict[str, float]]:
    """One scrape of the server's /metrics: the text scorer's forward-pass and cache counters
    ("text", keyed like `batches_total`) and CPU seconds so far per thread role ("threads")."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text: dict[str, float] = {}
    threads: dict[str, float] = {}
    body = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name.startswith("heron_scorer_") and sample.labels.get("scorer") == "text":
                text[sample.name.removeprefix("heron_scorer_")] = sample.value
            elif sample.name == "heron_thread_cpu_seconds_total":
                role = thread_role(sample.labels["thread"])
                threads[role] = threads.get(role, 0.0) + sample.value
    return {"text": text, "threads": threads}


def model_work(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """What the model did for one load phase: messages forwarded, cache hits, mean batch.

    Shows whether every request cost a forward pass (1.0 forwards per request, no cache hits)."""
    forwarded = after["batched_messages_total"] - before["batched_messages_total"]
    batches = after["batches_total"] - before["batches_total"]
    return {"forwarded": forwarded, "cache_hits": after["cache_hits_total"] - before["cache_hits_total"],
            "forwarded_per_request": round(forwarded / max(1, requests), 3),
            "mean_batch": round(forwarded / max(1.0, batches), 2)}


def service_figures(messages: list[str], seconds: float, procs: int, tmp: Path) -> dict[str, Any]:
    env = base_env(f"sqlite:///{tmp}/bench.db", None)
    key = make_key(env)
    port = free_port()
    server = Server(env, port, procs, tmp / "serve.log")
    try:
        script = tmp / "sync.lua"
        lua_script(script, messages, "/v1/moderate", None, tag="w")
        url = f"http://127.0.0.1:{port}"
        run_wrk(url, script, 3, 16, key)  # warm-up
        lua_script(script, messages, "/v1/moderate", None, tag="s")
        # With one process, /metrics is that process's: count what the model did per phase.
        counted = procs == 1
        m0 = server_metrics(url) if counted else {}
        cpu0 = cpu_snapshot(server.proc.pid, [])
        saturation = run_wrk(url, script, seconds, 64, key)
        cpu = _cpu_delta(cpu0, cpu_snapshot(server.proc.pid, []))
        m1 = server_metrics(url) if counted else {}
        if counted:
            saturation["model"] = model_work(m0["text"], m1["text"], saturation["requests"])
            # Where the API process's cores went, per request: what bounds the ratio to the bare model.
            per = {k: round(1000 * (v - m0["threads"].get(k, 0.0)) / max(1, saturation["requests"]), 3)
                   for k, v in m1["threads"].items()}
            saturation["thread_cpu_ms_per_request"] = dict(sorted(per.items(), key=lambda kv: -kv[1]))
        saturation["cpu_ms_per_request"] = {k: round(1000 * cpu[k] / max(1, saturation["requests"]), 3)
                                            for k in ("api", "wrk")}
        half = half_saturation_run(url, script, messages, saturation["requests_per_s"] / 2, seconds, key, counted)
    finally:
        server.stop()
    return {"saturation": saturation, "half_saturation": half, "api_processes": procs}


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes and all their descendants."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def _named_pids(*names: str) -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith(names)]


def cpu_snapshot(server: int, workers: list[int]) -> dict[str, float]:
    """CPU seconds so far per part of the asynchronous path (API, Celery workers, PostgreSQL, Redis,
    and the load generator via this process's waited-for children)."""
    import resource

    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"api": _cpu_seconds([server]), "workers": _cpu_seconds(workers),
            "postgres": _cpu_seconds(_named_pids("postgres")), "redis": _cpu_seconds(_named_pids("redis-server")),
            "wrk": child.ru_utime + child.ru_stime}


def _cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b[k] - a[k], 2) for k in a}


def async_figures(messages: list[str], seconds: float, workers: int, procs: int, tmp: Path) -> dict[str, Any]:
    import redis
    import sqlalchemy as sa

    redis.Redis.from_url(REDIS).flushdb()
    name = f"heron_bench_{os.getpid()}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    env = base_env(db_url, REDIS)
    key = make_key(env)
    port = free_port()
    server = Server(env, port, procs, tmp / "serve-async.log")
    worker_procs = []
    engine = sa.create_engine(db_url)
    try:
        logs = [tmp / f"worker{i}.log" for i in range(workers)]
        for i, log in enumerate(logs):
            worker_procs.append(subprocess.Popen(
                [str(BIN / "heron"), "worker", "--hostname", f"bench{i}@%h", "--loglevel", "INFO"],
                env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True))
        # A worker says " ready." once its models are loaded and warm (pipeline.queue.celery_app.preload_runtime).
        deadline = time.monotonic() + 300
        while not all(" ready." in log.read_text("utf-8", "replace") for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in worker_procs):
                raise SystemExit(f"heron worker did not become ready; see {tmp}")
            time.sleep(0.5)
        script = tmp / "async.lua"
        lua_script(script, messages, "/v1/messages", None, tag="a")
        start = time.monotonic()
        worker_pids = [p.pid for p in worker_procs]
        cpu0 = cpu_snapshot(server.proc.pid, worker_pids)
        submitted = run_wrk(f"http://127.0.0.1:{port}", script, seconds, 32, key)
        accept_s = time.monotonic() - start
        cpu1 = cpu_snapshot(server.proc.pid, worker_pids)
        accepted = submitted["requests"] - submitted["non_2xx"]
        decided = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with engine.connect() as c:
                decided = int(c.execute(sa.text("SELECT count(*) FROM decisions")).scalar() or 0)
            if decided >= accepted:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        cpu2 = cpu_snapshot(server.proc.pid, worker_pids)
    finally:
        for p in worker_procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)
        server.stop()
        engine.dispose()
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return {"accepted": accepted, "decided": decided, "seconds": round(elapsed, 2),
            "decided_per_s": decided / elapsed, "accept_rate_per_s": submitted["requests_per_s"], "workers": workers,
            # Where the two cores went: CPU seconds per part while accepting, then while draining.
            "accept_seconds": round(accept_s, 2), "cpu_accepting": _cpu_delta(cpu0, cpu1),
            "cpu_draining": _cpu_delta(cpu1, cpu2),
            "cpu_ms_per_message": {k: round(1000 * v / max(1, decided), 3)
                                   for k, v in _cpu_delta(cpu0, cpu2).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    # One API process: with two, four one-thread model workers fought over two cores (measured
    # 424 vs 548-566 req/s at saturation, and a p99 of 21 ms vs 6-8 ms at half saturation).
    parser.add_argument("--api-procs", type=int, default=1)
    parser.add_argument("--skip-async", action="store_true")
    parser.add_argument("--skip-sync", action="store_true", help="only the bare figures and the async path")
    args = parser.parse_args()

    from bench_text import load_messages

    messages = load_messages(2000)
    with tempfile.TemporaryDirectory(prefix="heron-bench-") as tmpdir:
        tmp = Path(tmpdir)
        bare = bare_figures(messages, min(args.seconds, 5))
        service = None if args.skip_sync else service_figures(messages, args.seconds, args.api_procs, tmp)
        asynchronous = None if args.skip_async else async_figures(messages, args.seconds, args.workers,
                                                                   args.api_procs, tmp)
    best = bare["best"]["msg_per_s"]
    naive = bare["naive"][0]["msg_per_s"]
    batch1 = bare["batch1"]["p50_ms"] if bare["batch1"] else float("nan")
    # The bare model's own batch-1 p99 (back to back, same row): chat messages run from a few tokens
    # to the 64-token cap, so a lone forward's p99 alone is 2-3x its p50 before any HTTP or queueing;
    # printed beside the target so the floor under "p99 <= 3x bare batch-1" is visible in the same run.
    batch1_p99 = bare["batch1"]["p99_ms"] if bare["batch1"] else float("nan")
    table = [
        ("bare best: " + bare["best"]["name"], f"{best:,.0f} msg/s", "1.00"),
        ("naive per-request fp32", f"{naive:,.0f} msg/s", f"{naive / best:.2f}"),
    ]
    if service:
        sat = service["saturation"]["requests_per_s"]
        half = service["half_saturation"]
        table += [
            ("POST /v1/moderate saturation", f"{sat:,.0f} req/s", f"{sat / best:.2f} (target ≥ 0.60); "
                                                                  f"{sat / naive:.1f}× naive (target ≥ 5)"),
            ("  CPU ms per request", ", ".join(f"{k} {v:.2f}" for k, v in
                                              service["saturation"]["cpu_ms_per_request"].items()), ""),
            ("    of which, by thread", ", ".join(f"{k} {v:.2f}" for k, v in
                                              service["saturation"].get("thread_cpu_ms_per_request", {}).items()), ""),
            ("POST /v1/moderate at half saturation",
             f"{half['requests_per_s']:,.0f} req/s (target {half.get('target_rate', sat / 2):,.0f}), "
             f"p50 {half['p50_ms']:.1f} ms, p99 {half['p99_ms']:.1f} ms",
             f"p99 / bare batch-1 {half['p99_ms'] / batch1:.1f}× (target ≤ 3; bare batch-1 p50 {batch1:.2f} ms, "
             f"its own p99 {batch1_p99:.2f} ms = {batch1_p99 / batch1:.1f}×)"),
        ]
        for phase in ("saturation", "half_saturation"):
            work = service[phase].get("model")
            if work:
                table.append((f"  text model, {phase.replace('_', ' ')}",
                              f"{work['forwarded_per_request']:.3f} forwards/request",
                              f"mean batch {work['mean_batch']:.1f}, {work['cache_hits']:.0f} cache hits"))
    if asynchronous:
        table.append(("async via Redis + Celery", f"{asynchronous['decided_per_s']:,.0f} msg/s decided",
                      f"{asynchronous['decided_per_s'] / best:.2f} (target ≥ 0.50)"))
        table.append(("  CPU ms per decided message", ", ".join(
            f"{k} {v:.2f}" for k, v in asynchronous["cpu_ms_per_message"].items()), ""))
    width = max(len(r[0]) for r in table)
    for name, value, ratio in table:
        print(f"{name:<{width}}  {value:>24}  {ratio}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"bare": bare, "service": service, "async": asynchronous, "table": table},
                                  indent=2, default=str) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
