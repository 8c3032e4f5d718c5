"""`heron moderate --input`: a JSON-lines file through the pipeline on every core, decisions streamed in order.

Why this shape: the text model's forward pass is nearly all of the cost of a decision, and one
process runs it on one core (the old path: 195 msg/s with 11 s of start-up, while `heron serve`
reached 311 req/s with two model threads). So, as `heron serve` does with its model threads,
the forward pass runs in one single-threaded model worker per core, here worker *processes*
(`concurrent.futures.ProcessPoolExecutor`, spawned), each with its own `TextScorer` built from the
same settings as the service's (`text_workers=1`, `text_threads=1`): the same artifact, forward
path, batching and rounding, so the same decisions.

Everything else stays in this process and in input order: reading and validating lines, the
feature stage (behaviour counters, when they land, must see messages in the order they were
sent), the other scorers (word lists, links), the ensemble, the policy and writing. Chunks of
`batch_size` messages are handed to the workers as soon as their features are computed; up to
two chunks per worker are in flight, and each chunk's decisions are written (and flushed) as soon
as it and every chunk before it are done, so output starts long before the last line is scored
and memory stays flat for any file size. The workers load while the first chunks are read.
`workers=0` keeps the model in this process (the path before this module) with the same streaming.

Only the scorer's declared inputs go to a worker (the message and the features in its `needs`),
and only its Signals come back.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import ValidationError

from pipeline.features.context import Feature, ItemContext, ScoringItem
from pipeline.guilds import GuildConfig
from pipeline.scorers.base import Scorer
from pipeline.service import ModerationService
from pipeline.settings import Settings, get_settings
from pipeline.types import Decision, Message, Signal

log = logging.getLogger(__name__)

TENANT = "cli"
# Scorers whose `score` runs in the worker processes: the model forward passes. The rest are
# cheap and stay in order in this process.
FANNED_OUT: frozenset[str] = frozenset({"text"})
IN_FLIGHT_PER_WORKER = 2  # chunks queued per worker: one running, one ready to start


def default_workers() -> int:
    """One model worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def render(message: Message, decision: Decision) -> dict[str, Any]:
    """One output line: the message's id, then the decision (its own id as `decision_id`)."""
    body = decision.model_dump(mode="json")
    body["decision_id"] = body.pop("id")
    body.pop("message_id")
    return {"id": message.id, **body}


def invalid_line(n: int, exc: ValidationError) -> dict[str, Any]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    return {"line": n, "error": {"code": "invalid_message", "message": f"{loc}: {err['msg']}".strip(": ")}}


# -- the worker processes --------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_settings(settings: Settings) -> Settings:
    """The service's settings with one single-threaded model worker (this process is that worker)."""
    return settings.model_copy(update={"text_workers": 1, "text_threads": 1})


def _init_worker(names: Sequence[str], settings: Settings | None = None) -> None:
    """Load the fanned-out scorers once per worker process, one thread each, and warm them up.

    A scorer that fails to load is remembered, not raised: every chunk then gets its error, as the
    service reports a scorer that failed at start-up."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipeline.scorers import registry

    settings = _worker_settings(settings or get_settings())
    scorers: dict[str, Scorer] = {}
    errors: dict[str, str] = {}
    for name in names:
        try:
            scorer = registry.get_entry(name).load_class().from_settings(settings).load()
            scorer.score([ScoringItem(Message(text="hello there"))])  # first runs allocate and optimise
            scorers[name] = scorer
        except Exception as exc:  # noqa: BLE001 - reported per chunk, as the service does
            errors[name] = f"failed to load: {type(exc).__name__}: {exc}"
    _WORKER.update(scorers=scorers, errors=errors)


def _score_remote(name: str, items: list[ScoringItem]) -> tuple[str, list[Signal] | str]:
    """In a worker: (scorer version, its Signals for `items`) or ("unavailable", the load error)."""
    scorer = _WORKER["scorers"].get(name)
    if scorer is None:
        return "unavailable", _WORKER["errors"].get(name, f"scorer {name} is not loaded in this worker")
    return scorer.version, scorer.score(items)


def _ping() -> int:
    return os.getpid()


def slim(item: ScoringItem, needs: frozenset[Feature]) -> ScoringItem:
    """The item with only the features `needs` names (what crosses to a worker process)."""
    ctx = item.context
    return ScoringItem(
        item.message,
        tenant_id=item.tenant_id,
        context=ItemContext(
            normalized_text=ctx.normalized_text if Feature.TEXT in needs else None,
            links=ctx.links if Feature.LINKS in needs else (),
            media=ctx.media if Feature.MEDIA in needs else (),
            behaviour=ctx.behaviour if Feature.BEHAVIOUR in needs else None,
        ),
    )


IDLE_FLUSH_S = 0.05  # a piped input quiet this long sends its partial chunk


def _numbered(lines: Iterable[str], idle: Callable[[], bool]) -> Iterator[tuple[int, str | None]]:
    """(line number, line) from a reader thread; (0, None) when the input pauses while `idle()` says a
    partial chunk is waiting."""
    q: queue.Queue[tuple[int, str] | BaseException | None] = queue.Queue(maxsize=4096)

    def read() -> None:
        try:
            for n, line in enumerate(lines, start=1):
                q.put((n, line))
            q.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    threading.Thread(target=read, name="heron-batch-reader", daemon=True).start()
    while True:
        try:
            got = q.get(timeout=IDLE_FLUSH_S) if idle() else q.get()
        except queue.Empty:
            yield 0, None
            continue
        if got is None:
            return
        if isinstance(got, BaseException):
            raise got
        yield got


# -- the parent ------------------------------------------------------------------------------------
@dataclass
class _Chunk:
    """One batch of input lines on its way through: valid messages scored, errors kept in place."""

    entries: list[tuple[int, Message | dict[str, Any]]]  # (line number, message or error line)
    items: list[ScoringItem]
    columns: list[list[Signal | None]]  # one per scorer, in the configured order
    guilds: list[GuildConfig] = field(default_factory=list)  # per valid message, in order
    remote: dict[int, tuple[list[int], Future[Any]]] = field(default_factory=dict)  # column -> (rows, future)
    # Columns of scorers that read other scorers' signals (`Scorer.reads`): run in `_emit`, once
    # the remote columns they may read are in.
    readers: list[int] = field(default_factory=list)
    prepare_ms: float = 0.0  # this process's time on the chunk (features, local scorers)

    def ready(self) -> bool:
        return all(f.done() for _, f in self.remote.values())


@dataclass
class BatchResult:
    decided: int = 0
    invalid: int = 0
    warnings: list[str] = field(default_factory=list)


class BatchModerator:
    """Decides JSON lines in input order, with the fanned-out scorers' work on worker processes.

    `workers` 0 runs everything in this process (the path before this module: one model thread).
    """

    def __init__(
        self,
        names: Sequence[str],
        guild: GuildConfig,
        workers: int | None = None,
        batch_size: int = 64,
        settings: Settings | None = None,
        tenant_id: str = TENANT,
        guild_for: Callable[[Message], GuildConfig | None] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.names = list(names)
        self.guild = guild
        # `heron moderate --tenant`: the tenant's id (its banks, behaviour state, decision ids) and
        # its registered guilds' configurations; None from `guild_for` means `guild`.
        self.tenant_id = tenant_id
        self.guild_for = guild_for or (lambda _m: None)
        self.batch_size = max(1, batch_size)
        self.workers = default_workers() if workers is None else max(0, workers)
        remote = [n for n in self.names if n in FANNED_OUT] if self.workers else []
        self.pool: ProcessPoolExecutor | None = None
        if remote:
            import multiprocessing as mp

            # Spawned, not forked: a fork would copy this process's threads' locks mid-state.
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_init_worker,
                initargs=(remote, self.settings),
            )
            for _ in range(self.workers):  # start every worker now: they load while we read
                self.pool.submit(_ping)
        from pipeline.features import build_stage
        from pipeline.scorers import registry
        from pipeline.service import needed_features

        local = [n for n in self.names if n not in remote]
        self.service = ModerationService.from_names(local, settings=self.settings)
        # Unloaded instances of the fanned-out scorers: what `needs` and `applies_to` say, and error
        # signals, without the model (that lives in the workers).
        self.remote = {n: registry.get_entry(n).load_class().from_settings(self.settings) for n in remote}
        # The feature stage here also serves the remote scorers: features are computed once, in order.
        needs = needed_features([*self.service.scorers, *self.remote.values()])
        self.service.features.close()
        self.service.features = build_stage(needs, self.settings)
        self._remote_errors: dict[str, str] = {}
        self.max_in_flight = IN_FLIGHT_PER_WORKER * max(1, self.workers)

    # -- columns ----------------------------------------------------------------------------------
    def _local_scorer(self, name: str) -> Scorer | None:
        return next((s for s in self.service.scorers if s.name == name), None)

    def _prepare(self, entries: list[tuple[int, Message | dict[str, Any]]]) -> _Chunk:
        """Features in order, the local scorers, and the remote scorers' work handed to the pool."""
        started = time.perf_counter()
        batch = [(m, self.guild_for(m) or self.guild) for _, m in entries if isinstance(m, Message)]
        items = self.service._items(self.tenant_id, batch)
        self.service.features.run(items)
        chunk = _Chunk(entries, items, [], guilds=[g for _, g in batch])
        for col, name in enumerate(self.names):
            if name in self.remote:
                chunk.columns.append(self._submit(chunk, col, self.remote[name], items))
            else:
                scorer = self._local_scorer(name)
                if scorer is not None and scorer.reads and items:
                    chunk.readers.append(col)
                    chunk.columns.append([None] * len(items))
                    continue
                chunk.columns.append(
                    self.service._run_scorer(scorer, items) if scorer and items else [None] * len(items)
                )
        chunk.prepare_ms = (time.perf_counter() - started) * 1000
        return chunk

    def _submit(self, chunk: _Chunk, col: int, scorer: Scorer, items: list[ScoringItem]) -> list[Signal | None]:
        """As `ModerationService._run_scorer`, with `score` on a worker: error signals where a needed
        feature failed, None where the scorer does not apply, the rest sent."""
        out: list[Signal | None] = [None] * len(items)
        rows = []
        for i, it in enumerate(items):
            missing = it.context.missing(scorer.needs)
            if missing is not None:
                out[i] = scorer.error_signal(missing)
            elif scorer.applies_to(it):
                rows.append(i)
        if rows:
            assert self.pool is not None
            future = self.pool.submit(_score_remote, scorer.name, [slim(items[i], scorer.needs) for i in rows])
            chunk.remote[col] = (rows, future)
        return out

    def _collect(self, chunk: _Chunk) -> None:
        """Fill the remote columns from the workers' answers (a failure is an error signal)."""
        for col, (rows, future) in chunk.remote.items():
            name = self.names[col]
            scorer = self.remote[name]
            try:
                version, got = future.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker is a missing signal, not a crash
                log.exception("scorer %s failed in a worker", name)
                got = f"{type(exc).__name__}: {exc}"
                version = scorer.version
            if isinstance(got, str):
                if version == "unavailable":
                    self._remote_errors.setdefault(name, got)
                signals = [Signal(scorer=name, version=version, error=got)] * len(rows)
            elif len(got) != len(rows):
                signals = [scorer.error_signal(f"returned {len(got)} signals for {len(rows)} items")] * len(rows)
            else:
                scorer.version = version
                signals = got
            for i, sig in zip(rows, signals, strict=True):
                chunk.columns[col][i] = sig

    def _run_readers(self, chunk: _Chunk) -> None:
        """The reading scorers' columns, handed the (now complete) columns they read."""
        started = time.perf_counter()
        named = {name: chunk.columns[col] for col, name in enumerate(self.names) if col not in chunk.readers}
        for col in chunk.readers:
            scorer = self._local_scorer(self.names[col])
            assert scorer is not None
            self.service.hand_over(scorer, chunk.items, named)
            chunk.columns[col] = self.service._run_scorer(scorer, chunk.items)
        chunk.prepare_ms += (time.perf_counter() - started) * 1000

    def _emit(self, chunk: _Chunk, write: Callable[[dict[str, Any]], None], result: BatchResult) -> None:
        self._collect(chunk)
        self._run_readers(chunk)
        # As the service's batch latency: this process's work plus the workers' scoring time (their
        # Signals' latency), not the time the chunk waited in the queue behind earlier chunks.
        remote_ms = max(
            (s.latency_ms for col in chunk.remote for s in chunk.columns[col] if s is not None), default=0.0
        )
        elapsed_ms = chunk.prepare_ms + remote_ms
        k = 0
        for _, entry in chunk.entries:
            if isinstance(entry, Message):
                signals = [c[k] for c in chunk.columns if c[k] is not None]
                decision = self.service._assemble(self.tenant_id, entry, chunk.guilds[k], signals, elapsed_ms,
                                                  item=chunk.items[k])
                write(render(entry, decision))
                result.decided += 1
                k += 1
            else:
                write(entry)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, lines: Iterable[str], sink: IO[str], progress: Callable[[int], None] | None = None) -> BatchResult:
        """Decide every line of `lines` and write one JSON line per non-blank input line to `sink`,
        in input order, flushed chunk by chunk as soon as a chunk and all before it are decided.

        Three threads of control: a reader (so that a pause in a piped input sends the partial chunk
        on after `IDLE_FLUSH_S` instead of holding decisions back), this thread (validation, features
        and local scorers in input order, handing chunks out), and a writer (waits for each chunk's
        workers in order, assembles and writes). At most `max_in_flight` chunks are between the last
        two, so a slow sink or slow workers hold the reader back instead of filling memory."""
        result = BatchResult()
        handed: queue.Queue[_Chunk | None] = queue.Queue(maxsize=self.max_in_flight)
        failed: list[BaseException] = []

        def write(obj: dict[str, Any]) -> None:
            sink.write(json.dumps(obj, ensure_ascii=False) + "\n")

        def writer() -> None:
            while (chunk := handed.get()) is not None:
                if failed:
                    continue  # drain, so the producer never blocks on a dead writer
                try:
                    self._emit(chunk, write, result)
                    sink.flush()
                    if progress:
                        progress(len(chunk.entries))
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    failed.append(exc)

        out = threading.Thread(target=writer, name="heron-batch-writer", daemon=True)
        out.start()
        entries: list[tuple[int, Message | dict[str, Any]]] = []
        valid = 0
        # The input is a time-ordered stream (behaviour windows run on message time); a line whose
        # timestamp goes backwards is still decided, and counted, so a badly sorted log is noticed.
        latest: float | None = None
        backwards = 0

        def submit() -> None:
            nonlocal entries, valid
            if entries and not failed:
                handed.put(self._prepare(entries))
            entries, valid = [], 0

        try:
            for n, line in _numbered(lines, idle=lambda: bool(entries)):
                if line is None:  # the input paused: send what we have
                    submit()
                    continue
                if not line.strip():
                    continue
                try:
                    message = Message.model_validate_json(line)
                    entries.append((n, message))
                    valid += 1
                    ts = message.timestamp.timestamp()
                    if latest is not None and ts < latest:
                        backwards += 1
                    latest = ts if latest is None else max(latest, ts)
                except ValidationError as exc:
                    result.invalid += 1
                    entries.append((n, invalid_line(n, exc)))
                if valid >= self.batch_size:
                    submit()
                if failed:
                    break
            submit()
        finally:
            handed.put(None)
            out.join()
        if failed:
            raise failed[0]
        result.warnings = [f"scorer {n} unavailable: {e}" for n, e in self._remote_errors.items()]
        if backwards:
            result.warnings.append(
                f"{backwards} lines have a timestamp earlier than a line before them: the input is read as a "
                "time-ordered stream (sort it by timestamp for behaviour features to match live traffic)"
            )
        return result

    def unavailable(self) -> dict[str, str]:
        return dict(self.service.unavailable)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.service.close()

    def __enter__(self) -> BatchModerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def moderate_file(
    lines: Iterable[str],
    sink: IO[str],
    names: Sequence[str],
    guild: GuildConfig,
    workers: int | None = None,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    tenant_id: str = TENANT,
    guild_for: Callable[[Message], GuildConfig | None] | None = None,
) -> BatchResult:
    """What `heron moderate --input` runs: a `BatchModerator` over `lines`, warnings to `warn`."""
    with BatchModerator(names, guild, workers=workers, batch_size=batch_size, tenant_id=tenant_id,
                        guild_for=guild_for) as mod:
        for name, err in mod.unavailable().items():
            warn(f"warning: scorer {name} unavailable: {err}")
        result = mod.run(lines, sink, progress)
    for w in result.warnings:
        warn(f"warning: {w}")
    return result
