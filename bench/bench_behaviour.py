"""What the behaviour features cost: messages per second through the service with and without them,
in the same run, and Redis round trips per message.

`ModerationService.decide_batch` (feature stage -> scorers -> ensemble -> policy, the code a
worker runs per batch) on simulated guild traffic (training/behaviour/simulate.py; texts made
unique and the text model's repeat cache off, so every message costs a forward pass), batches
of 64 in time order. Configurations, measured in paired rounds (one after another, round
after round, so this machine's drifting speed hits all of them alike; the median per-round
ratio is the headline):

- `base`: the default text scorers (rules, links, text), no behaviour;
- `features-memory`: the same scorers plus the behaviour feature stage, in-process state;
- `features-redis`: the same with state in Redis (one pipeline per batch);
- `features-redis-serial`: as `features-redis`, with the feature stage run to completion before
  any scorer (`ModerationService.overlap_features = False`): what overlapping the behaviour
  counters with the text model's forward pass saves;
- `full-redis`: plus the behaviour scorer (features + model, reading the text model's spam score),
  state in Redis.

The behaviour extractor's own time is reported too (`behaviour_extractor_*`); since it overlaps the
scorers, its share of the wall time is no longer what it costs: the throughput ratio is.

    python bench/bench_behaviour.py [--rounds 3] [--messages 1024] [--redis redis://127.0.0.1:6379/7]

Writes bench/results/behaviour.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = ROOT / "bench" / "results" / "behaviour.json"


def _messages(n: int, seed: int) -> list[Any]:
    from training.behaviour.simulate import simulate

    out = []
    s = seed
    while len(out) < n:
        for sim in simulate(s):
            unique = {"id": f"{sim.message.id}-{s}", "text": f"{sim.message.text} #{len(out)}"}
            out.append(sim.message.model_copy(update=unique))
        s += 1
    return out[:n]


def _service(config: str, redis_url: str, prefix: str) -> Any:
    from pipeline.features import Feature, FeatureStage, build_stage
    from pipeline.features.behaviour import BehaviourExtractor, InProcessBackend, RedisBackend
    from pipeline.service import ModerationService, needed_features
    from pipeline.settings import override_settings

    settings = override_settings(text_cache_size=0, redis_url=None)
    names = ["rules", "links", "text"] + (["behaviour"] if config == "full-redis" else [])
    redis_state = config in ("features-redis", "features-redis-serial", "full-redis")
    base = ModerationService.from_names(names, settings=settings)
    if config == "base":
        return base, None
    stage = build_stage(needed_features(base.scorers) | {Feature.BEHAVIOUR}, settings)
    backend = RedisBackend(redis_url, prefix=prefix) if redis_state else InProcessBackend()
    extractors = [e if not isinstance(e, BehaviourExtractor) else BehaviourExtractor(backend) for e in stage.extractors]
    for e in extractors:
        if isinstance(e, BehaviourExtractor):
            _time_extract(e)
    svc = ModerationService(base.scorers, features=FeatureStage(extractors))
    svc.overlap_features = config != "features-redis-serial"
    return svc, backend


EXTRACT_SECONDS: dict[int, float] = {}
LOADS: list[float] = []  # the machine's 1-minute load average after each run (it is shared)


def _time_extract(extractor: Any) -> None:
    """Accumulate the wall time the behaviour extractor takes (MinHash + state + one Redis call)."""
    inner = extractor.extract
    EXTRACT_SECONDS[id(extractor)] = 0.0

    def timed(items: Any) -> None:
        started = time.perf_counter()
        try:
            inner(items)
        finally:
            EXTRACT_SECONDS[id(extractor)] += time.perf_counter() - started

    extractor.extract = timed


def _redis_cpu_seconds(backend: Any) -> float:
    """The Redis server's own CPU time so far (main thread, user + system): the script's cost, which
    the service's throughput ratio only shows when the server competes with it for cores."""
    if backend is None or not hasattr(backend, "client"):
        return 0.0
    info = backend.client.info("cpu")
    return float(info.get("used_cpu_user_main_thread", info["used_cpu_user"])) + float(
        info.get("used_cpu_sys_main_thread", info["used_cpu_sys"])
    )


def _extract_seconds(svc: Any) -> float:
    return sum(EXTRACT_SECONDS.get(id(e), 0.0) for e in svc.features.extractors)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--redis", default=os.environ.get("HERON_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    configs = ["base", "features-memory", "features-redis", "features-redis-serial", "full-redis"]
    services = {c: _service(c, args.redis, f"heron:bench:{c}:{time.time_ns()}:") for c in configs}
    warm = _messages(128, 500)
    for svc, _ in services.values():  # load and warm every path before timing
        svc.decide_batch("warm", [(m, None) for m in warm[:64]])
    rates: dict[str, list[float]] = {c: [] for c in configs}
    trips: dict[str, list[float]] = {c: [] for c in configs}
    share: dict[str, list[float]] = {c: [] for c in configs}
    server_cpu: dict[str, list[float]] = {c: [] for c in configs}
    for r in range(args.rounds):
        msgs = _messages(args.messages, 1000 + 10 * r)
        for c in configs if r % 2 == 0 else configs[::-1]:  # alternate the order against drift
            svc, backend = services[c]
            tenant = f"bench-{r}"  # fresh state per round: every message is new to the counters
            before = backend.round_trips() if backend else 0
            extract_before = _extract_seconds(svc)
            cpu_before = _redis_cpu_seconds(backend)
            started = time.perf_counter()
            for i in range(0, len(msgs), args.batch):
                svc.decide_batch(tenant, [(m, None) for m in msgs[i : i + args.batch]])
            elapsed = time.perf_counter() - started
            rates[c].append(len(msgs) / elapsed)
            share[c].append((_extract_seconds(svc) - extract_before) / elapsed)
            trips[c].append(((backend.round_trips() if backend else 0) - before) / len(msgs))
            server_cpu[c].append((_redis_cpu_seconds(backend) - cpu_before) / len(msgs))
            LOADS.append(os.getloadavg()[0])
            print(
                f"round {r} {c:21s} {len(msgs) / elapsed:8.1f} msg/s  behaviour {share[c][-1]:.1%}  "
                f"load {LOADS[-1]:.1f}",
                flush=True,
            )
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "messages_per_round": args.messages,
        "batch": args.batch,
        "rounds": args.rounds,
        "msgs_per_s": {c: [round(x, 1) for x in v] for c, v in rates.items()},
        "median_msgs_per_s": {c: round(statistics.median(v), 1) for c, v in rates.items()},
        "redis_round_trips_per_message": {c: round(statistics.median(v), 4) for c, v in trips.items()},
        "redis_server_cpu_us_per_message": {
            c: round(statistics.median(v) * 1e6, 1) for c, v in server_cpu.items() if any(v)
        },
    }
    ratios = {}
    for c in configs[1:]:
        per_round = [x / b for x, b in zip(rates[c], rates["base"], strict=True)]
        ratios[c] = {"per_round": [round(x, 3) for x in per_round], "median": round(statistics.median(per_round), 3)}
    result["throughput_vs_base"] = ratios
    result["feature_stage_cost"] = {
        c: round(1 - ratios[c]["median"], 3) for c in ("features-memory", "features-redis", "features-redis-serial")
    }
    result["load_average_1m"] = [round(x, 2) for x in LOADS]
    # The same cost measured inside each run: the share of its wall time spent in the behaviour
    # extractor (immune to the machine's drift between runs), and milliseconds per message.
    result["behaviour_extractor_share_of_wall_time"] = {
        c: {"per_round": [round(x, 4) for x in share[c]], "median": round(statistics.median(share[c]), 4)}
        for c in configs[1:]
    }
    result["behaviour_extractor_ms_per_message"] = {
        c: round(statistics.median(sh / rt for sh, rt in zip(share[c], rates[c], strict=True)) * 1000, 3)
        for c in configs[1:]
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    for svc, _ in services.values():
        svc.close()


if __name__ == "__main__":
    main()
