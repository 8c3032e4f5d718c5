"""The `heron` command line: serve, worker, migrate, keys, moderate, train, eval."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Heron: self-hosted content moderation for chat platforms.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage tenant API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

# `train` and `eval` forward to training/cli.py, imported only when one of them runs: a serving
# process (`heron serve`, `heron worker`, `heron moderate`) must not load the training package and
# what it pulls in (pandas, scikit-learn's metrics, the data loaders). Help and options are
# training/cli.py's own, so `heron train text --help` reads the same as before.
_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _run_training_cli(group: str, args: list[str]) -> None:
    try:
        from training.cli import app as training_app
    except ImportError as exc:  # pragma: no cover - only when training/ is absent from an install
        typer.echo(f"heron {group}: the training package is not installed here ({exc})", err=True)
        raise typer.Exit(2) from None
    training_app([group, *args], prog_name="heron")


@app.command("train", context_settings=_FORWARD, add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Train models from ../shared/data (`heron train text --help`)."""
    _run_training_cli("train", ctx.args)


@app.command("eval", context_settings=_FORWARD, add_help_option=False)
def eval_(ctx: typer.Context) -> None:
    """Evaluate models on the official test splits (`heron eval text --help`)."""
    _run_training_cli("eval", ctx.args)


def _setup_logging(level: str = "INFO") -> dict[str, Any]:
    """Configure this process's logging per HERON_LOG_FORMAT; returns the dictConfig it applied."""
    from pipeline.logs import configure_logging, resolve_format
    from pipeline.settings import get_settings

    return configure_logging(resolve_format(get_settings().log_format) == "json", level.upper())


def _fresh_metrics_dir(prefix: str) -> str:
    """Point this process and its children at a new, empty Prometheus multiprocess folder.

    Before anything imports `prometheus_client` (it picks its value store at import, and forked
    children inherit that choice); a folder from an earlier run would add its counts to this one.
    """
    import tempfile

    if "prometheus_client" in sys.modules:  # pragma: no cover - a programming error, not a user one
        raise RuntimeError("prometheus_client was imported before the multiprocess metrics folder was set")
    path = tempfile.mkdtemp(prefix=prefix)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (SQLite or PostgreSQL, per HERON_DATABASE_URL)."""
    from pipeline.migrate import upgrade
    from pipeline.settings import get_settings

    url = get_settings().database_url
    upgrade(url)
    typer.echo(f"database at {_redact(url)} is at the latest schema")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Option("--tenant", help="tenant name (created if new)")]) -> None:
    """Print a new API key for TENANT. Only its hash is stored: copy it now."""
    from pipeline.migrate import upgrade
    from pipeline.settings import get_settings
    from pipeline.store import Store

    settings = get_settings()
    upgrade(settings.database_url)
    tenant_id, key = Store.from_url(settings.database_url, settings.api_key_pepper).tenants.create_api_key(tenant)
    typer.echo(key)
    typer.echo(f"(tenant {tenant!r}, id {tenant_id}; use it as 'Authorization: Bearer <key>')", err=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="skip the schema upgrade at start")] = False,
    log_level: Annotated[str, typer.Option(help="log level")] = "info",
    workers: Annotated[int, typer.Option(help="API processes, each with its own models")] = 1,
) -> None:
    """Run the HTTP API (and, without HERON_REDIS_URL, the embedded worker) with the bundled models.

    With --workers N > 1, /metrics sums the counters of all N processes (a fresh
    PROMETHEUS_MULTIPROC_DIR for this run, removed at exit).
    """
    import shutil

    metrics_dir = _fresh_metrics_dir("heron-serve-metrics-") if workers > 1 else None
    import uvicorn

    from pipeline.migrate import upgrade
    from pipeline.settings import get_settings

    log_config = _setup_logging(log_level)
    settings = get_settings()
    if not no_migrate:
        upgrade(settings.database_url)
    mode = "Celery on " + _redact(settings.redis_url) if settings.redis_url else "embedded worker"
    typer.echo(
        f"heron: store {_redact(settings.database_url)}, queue {mode}, scorers {', '.join(settings.scorers)}", err=True
    )
    typer.echo(f"heron: serving on http://{host}:{port}  (docs: http://{host}:{port}/docs)", err=True)
    try:
        uvicorn.run(
            "api.main:create_app",
            factory=True,
            host=host,
            port=port,
            log_level=log_level,
            log_config=log_config,  # uvicorn applies it again in each worker process
            access_log=False,
            timeout_graceful_shutdown=10,
            workers=workers,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="tasks run at once in this process")] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: solo, threads or prefork")] = "solo",
    hostname: Annotated[str | None, typer.Option(help="Celery node name")] = None,
    loglevel: Annotated[str, typer.Option(help="log level")] = "INFO",
    metrics_port: Annotated[int | None, typer.Option(
        help="serve Prometheus metrics on this port (default: HERON_WORKER_METRICS_PORT; 0 = off)")] = None,
    metrics_addr: Annotated[str, typer.Option(help="bind address of the metrics endpoint")] = "0.0.0.0",
) -> None:
    """Run a Celery worker (needs HERON_REDIS_URL). Start as many as you like, on any machine."""
    from pipeline.settings import get_settings

    settings = get_settings()
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if not 0 <= port <= 65535:
        typer.echo(f"heron worker: --metrics-port must be 0-65535, got {port}", err=True)
        raise typer.Exit(2)
    if not settings.redis_url:
        typer.echo(
            "heron worker needs HERON_REDIS_URL (e.g. redis://127.0.0.1:6379/0); "
            "without it `heron serve` runs an embedded worker itself.",
            err=True,
        )
        raise typer.Exit(2)
    # prefork children count in their own processes: their values meet in a shared folder
    metrics_dir = _fresh_metrics_dir("heron-worker-metrics-") if port and pool == "prefork" else None
    _setup_logging(loglevel)
    _require_schema(settings.database_url, settings.api_key_pepper)
    from pipeline.metrics import SCORER_STATS, install_celery_task_metrics, start_metrics_server
    from pipeline.queue import worker as tasks
    from pipeline.queue.celery_app import QUEUE, make_celery

    celery = make_celery(settings.redis_url)
    install_celery_task_metrics()
    if pool != "prefork":  # prefork children load their own after the fork (worker._init_child)
        tasks.preload_runtime()
        # the runtime that takes tasks; none in a prefork parent
        SCORER_STATS.follow(lambda: rt.service if (rt := tasks.current_runtime()) is not None else None)
    if port:
        try:
            start_metrics_server(port, metrics_addr)
        except OSError as exc:
            typer.echo(f"heron worker: cannot serve metrics on {metrics_addr}:{port}: {exc}", err=True)
            raise typer.Exit(2) from None
        logging.getLogger(__name__).info("metrics on http://%s:%d/metrics", metrics_addr, port)

    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "-Q",
        QUEUE,
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    try:
        celery.worker_main(argv)
    finally:
        if metrics_dir:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


def _require_schema(database_url: str, pepper: str) -> None:
    """Refuse to start a worker on a database without Heron's current schema, with the fix.

    Why: such a worker would take tasks and fail every one of them, and its sweeper would log a
    traceback every few seconds. A database that does not answer yet is not refused: tasks retry
    until it does.
    """
    import sqlalchemy as sa

    from pipeline.migrate import head_revision
    from pipeline.store import Store

    store = Store.from_url(database_url, pepper)
    try:
        current = store.schema_revision()
    except sa.exc.OperationalError as exc:
        logging.getLogger(__name__).warning("database at %s is not answering yet (%s); tasks will retry",
                                            _redact(database_url), type(exc).__name__)
        return
    finally:
        store.engine.dispose()  # no pooled connection left behind for a prefork child to inherit
    head = head_revision()
    if current != head:
        state = "has no Heron schema" if current is None else f"is at schema {current}, this code needs {head}"
        typer.echo(f"heron worker: the database at {_redact(database_url)} {state}; run `heron migrate` first.",
                   err=True)
        raise typer.Exit(2)


def _read_json_file(path: Path | None) -> Any:
    return json.loads(path.read_text("utf-8")) if path else None


@app.command()
def moderate(
    text: Annotated[str | None, typer.Argument(help="one message text to moderate")] = None,
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="JSON lines, one Message per line (- : stdin)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="where to write decisions (JSON lines)")] = None,
    policy: Annotated[Path | None, typer.Option(help="a guild policy JSON file (default: platform policy)")] = None,
    lists: Annotated[Path | None, typer.Option(help="a guild lists JSON file (keywords, regexes, allowlist)")] = None,
    scorers: Annotated[str | None, typer.Option(help="comma-separated scorer names")] = None,
    batch_size: Annotated[int, typer.Option(help="messages per scoring batch")] = 64,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")] = True,
    workers: Annotated[int | None, typer.Option(
        help="--input: model worker processes (default: one per core; 0 = all in this process)")] = None,
) -> None:
    """Run the pipeline in-process, no server: one TEXT, or --input messages.jsonl --output decisions.jsonl.

    With --input, decisions are written in input order as they are ready, the text model running in
    one single-threaded worker process per core (`pipeline/batch.py`)."""
    from pydantic import ValidationError

    from pipeline.batch import render
    from pipeline.guilds import GuildConfig, lists_from_json
    from pipeline.policy import PLATFORM_DEFAULT, GuildPolicy
    from pipeline.settings import get_settings
    from pipeline.types import Message

    logging.basicConfig(level=logging.WARNING)
    if (text is None) == (input is None):
        typer.echo("give either a TEXT argument or --input FILE", err=True)
        raise typer.Exit(2)
    names = scorers.split(",") if scorers else get_settings().scorers
    guild = GuildConfig(
        "cli",
        GuildPolicy.model_validate(_read_json_file(policy)) if policy else PLATFORM_DEFAULT,
        1 if policy else 0,
        lists_from_json(_read_json_file(lists) or {}, 1 if lists else 0),
    )
    if input is not None:
        _moderate_file(input, output, names, guild, workers, batch_size, progress_bar)
        return

    from pipeline.service import ModerationService

    service = ModerationService.from_names(names)
    for name, err in service.unavailable.items():
        typer.echo(f"warning: scorer {name} unavailable: {err}", err=True)
    try:
        message = Message(text=text)
    except ValidationError as exc:
        typer.echo(f"invalid message: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None
    decision = service.decide_one("cli", message, guild)
    out = json.dumps(render(message, decision), ensure_ascii=False)
    if output:
        output.write_text(out + "\n", "utf-8")
    else:
        typer.echo(out)


def _moderate_file(input: Path, output: Path | None, names: list[str], guild: Any, workers: int | None,
                   batch_size: int, progress_bar: bool) -> None:
    """`heron moderate --input FILE` (`-`: standard input): `pipeline.batch.moderate_file` between the
    files, a progress bar on stderr."""
    import contextlib

    from tqdm import tqdm

    from pipeline.batch import moderate_file

    stdin = str(input) == "-"
    total = None
    if progress_bar and not stdin and input.is_file():
        with input.open("r", encoding="utf-8") as src:
            total = sum(1 for _ in src)
    sink = output.open("w", encoding="utf-8") if output else sys.stdout
    progress = tqdm(total=total, unit="msg", desc="moderating", file=sys.stderr, disable=not progress_bar)
    try:
        with contextlib.nullcontext(sys.stdin) if stdin else input.open("r", encoding="utf-8") as src:
            result = moderate_file(src, sink, names, guild, workers=workers, batch_size=batch_size,
                                   progress=progress.update, warn=lambda m: typer.echo(m, err=True))
    finally:
        progress.close()
        if output:
            sink.close()
    if output:
        typer.echo(f"wrote {result.decided} decisions to {output}"
                   + (f"; {result.invalid} invalid lines" if result.invalid else ""), err=True)
    if result.invalid:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
