"""What does shadow mode cost the async path? The same work with and without a shadow, in one run.

Two embedded runtimes (SQLite each, the real scorers rules + links + text), one without a shadow and
one shadowing every message with a candidate text model (the committed artifact, loaded a second
time: a candidate is a model of the same size) and optionally a candidate policy. Each round stores
N distinct real messages (OLID validation tweets, made unique per round so no repeat cache helps)
and decides them through `Runtime.process` in the embedded worker's batches of 64, then waits for
the shadow to record every row. Rounds alternate (off, on, off, on, ...) so the machine's drift hits
both; the figures are ratios of medians in the same run:

- CPU seconds per message (this process, every thread: the cost a deployment pays);
- wall time until every live decision is stored (what the chat service waits for);
- wall time until every shadow row is also stored.

    python bench/bench_shadow.py [--messages 1000] [--rounds 3] [--policy] [--sample 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = ROOT / "bench" / "results" / "shadow.json"
STRICT = {"thresholds": {"toxicity": [{"threshold": 0.3, "action": "hold_for_review"}]}}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build(tmp: Path, name: str, shadow: bool, policy: Path | None, sample: float = 1.0) -> Any:
    from models.text.model import DEFAULT_ARTIFACT_DIR
    from pipeline.migrate import upgrade
    from pipeline.runtime import Runtime
    from pipeline.settings import Settings

    extra: dict[str, Any] = {}
    if shadow:
        extra["shadow_text_artifact"] = DEFAULT_ARTIFACT_DIR
        if policy is not None:
            extra["shadow_policy"] = policy
        extra["shadow_sample"] = sample
    settings = Settings(database_url=f"sqlite:///{tmp}/{name}.db", redis_url=None,
                        scorers=["rules", "links", "text"], **extra)
    upgrade(settings.database_url)
    rt = Runtime.build("api", settings)
    rt.service.warm_up()
    assert (rt.shadow is not None) is shadow
    return rt


def run_round(rt: Any, texts: list[str], tag: str) -> dict[str, float]:
    from pipeline.shadow import sampled
    from pipeline.store.shadow import ShadowDecisions
    from pipeline.types import Message

    tenant = rt.store.tenants.ensure("bench")
    stored = rt.store.messages.insert_many([(tenant, Message(id=f"{tag}-{i}", text=f"{t} {tag}"))
                                            for i, t in enumerate(texts)])
    ids = [rid for rid, _ in stored]
    cpu0, t0 = cpu_s(), time.perf_counter()
    for start in range(0, len(ids), 64):
        rt.process(ids[start:start + 64])
    live_s = time.perf_counter() - t0
    if rt.shadow is not None:
        assert rt.shadow.flush(600), "the shadow did not finish"
    all_s = time.perf_counter() - t0
    cpu = cpu_s() - cpu0
    out = {"live_wall_s": live_s, "all_wall_s": all_s, "cpu_s": cpu, "cpu_ms_per_msg": 1000 * cpu / len(ids)}
    if rt.shadow is not None:
        rows = [r for r in ShadowDecisions.for_engine(rt.store.engine).rows(tenant) if r["message_id"].startswith(tag)]
        expected = sum(sampled(tenant, f"{tag}-{i}", rt.shadow.sample) for i in range(len(ids)))
        assert len(rows) == expected, f"{len(rows)} shadow rows for {expected} sampled messages"
        out["shadowed"] = len(rows)
        out["agreement"] = sum(r["live_action"] == r["shadow_action"] for r in rows) / len(rows)
    assert rt.store.decisions.count(tenant) >= len(ids)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--policy", action="store_true", help="also shadow a stricter policy (toxicity >= 0.3 held)")
    ap.add_argument("--sample", type=float, default=1.0, help="HERON_SHADOW_SAMPLE: the share shadowed")
    args = ap.parse_args()
    from bench_text import load_messages

    texts = load_messages(args.messages)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        policy = None
        if args.policy:
            policy = tmp / "strict.json"
            policy.write_text(json.dumps(STRICT), "utf-8")
        runtimes = {"off": build(tmp, "off", False, None), "on": build(tmp, "on", True, policy, args.sample)}
        results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for r in range(args.rounds):
            for mode in ("off", "on"):
                got = run_round(runtimes[mode], texts, f"r{r}{mode}")
                results[mode].append(got)
                print(f"round {r} shadow {mode:3}: live {got['live_wall_s']:.2f} s, with shadow rows "
                      f"{got['all_wall_s']:.2f} s, CPU {got['cpu_ms_per_msg']:.2f} ms/msg", flush=True)
        version = runtimes["on"].shadow.version
        for rt in runtimes.values():
            rt.stop()

    def med(mode: str, key: str) -> float:
        return statistics.median(x[key] for x in results[mode])

    summary = {
        "messages_per_round": args.messages, "rounds": args.rounds, "shadow_version": version,
        "shadow_sample": args.sample, "shadowed_per_round": results["on"][0]["shadowed"],
        "cpu_ms_per_msg": {"off": round(med("off", "cpu_ms_per_msg"), 3), "on": round(med("on", "cpu_ms_per_msg"), 3)},
        "cpu_ratio": round(med("on", "cpu_ms_per_msg") / med("off", "cpu_ms_per_msg"), 3),
        "live_wall_ratio": round(med("on", "live_wall_s") / med("off", "live_wall_s"), 3),
        "all_wall_ratio": round(med("on", "all_wall_s") / med("off", "all_wall_s"), 3),
        "live_msg_per_s": {"off": round(args.messages / med("off", "live_wall_s"), 1),
                           "on": round(args.messages / med("on", "live_wall_s"), 1)},
        "agreement_median": round(statistics.median(x["agreement"] for x in results["on"]), 4),
        "cpus": os.cpu_count(), "rounds_detail": results,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results_file = RESULTS if args.sample >= 1.0 else RESULTS.with_name(f"shadow_sample{args.sample:g}.json")
    results_file.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds_detail"}, indent=2))


if __name__ == "__main__":
    main()
