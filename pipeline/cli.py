"""The `heron` command line: serve, worker, migrate, keys, moderate, train, eval, shadow."""

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


users_app = typer.Typer(help="Manage reviewer accounts (the review desk at /review).", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant name (as given to `heron keys create`)")],
    role: Annotated[str, typer.Option("--role", help="admin, moderator or viewer")],
    username: Annotated[str, typer.Option("--username", help="the login name")],
    guild: Annotated[list[str] | None, typer.Option("--guild", help="a guild a moderator (or viewer) may review; "
                                                    "repeat for several")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
) -> None:
    """Create a reviewer account. The password comes from HERON_USER_PASSWORD, --password-stdin or a
    prompt (never from an argument, which would land in the shell history); only its argon2 hash is kept."""
    from pipeline.errors import HeronError
    from pipeline.migrate import upgrade
    from pipeline.settings import get_settings
    from pipeline.store import Store
    from pipeline.store.reviewers import tenant_id_by_name

    settings = get_settings()
    upgrade(settings.database_url)
    store = Store.from_url(settings.database_url, settings.api_key_pepper)
    tenant_id = tenant_id_by_name(store.review.db, tenant)
    if tenant_id is None:
        typer.echo(f"no tenant {tenant!r}; create it with `heron keys create --tenant {tenant}`", err=True)
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif settings.user_password is not None:
        password = settings.user_password.get_secret_value()
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        reviewer = store.reviewers.create(tenant_id, username, password, role, list(guild or []))
    except HeronError as exc:
        typer.echo(f"heron users create: {exc.message}", err=True)
        raise typer.Exit(2) from None
    scope = ", ".join(reviewer.guilds) if reviewer.guilds else "every guild"
    typer.echo(f"created {reviewer.role} {reviewer.username!r} (id {reviewer.id}) for tenant {tenant!r}: {scope}")


labels_app = typer.Typer(help="Reviewer verdicts as labelled data.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("export")
def labels_export(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant name")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the labels (JSON lines)")],
) -> None:
    """Export TENANT's reviewer verdicts as a versioned labelled dataset (+ OUTPUT.manifest.json)."""
    from pipeline.labels import export
    from pipeline.settings import get_settings
    from pipeline.store import Store
    from pipeline.store.reviewers import tenant_id_by_name

    settings = get_settings()
    store = Store.from_url(settings.database_url, settings.api_key_pepper)
    tenant_id = tenant_id_by_name(store.review.db, tenant)
    if tenant_id is None:
        typer.echo(f"no tenant {tenant!r}", err=True)
        raise typer.Exit(2)
    manifest = export(store.engine, tenant_id, output)
    typer.echo(f"wrote {manifest['labels']} labels ({manifest['hard_examples']} hard examples, "
               f"{manifest['skipped_without_text']} without text left out) to {output}, version {manifest['version']}",
               err=True)


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
    tenant: Annotated[str | None, typer.Option(
        "--tenant", help="decide as this tenant: its hash banks, and its guilds' policies and lists, from the "
        "configured store (HERON_DATABASE_URL); unregistered guilds get the platform default policy; "
        "--policy/--lists still override")] = None,
) -> None:
    """Run the pipeline in-process, no server: one TEXT, or --input messages.jsonl --output decisions.jsonl.

    With --input, decisions are written in input order as they are ready, the text model running in
    one single-threaded worker process per core (`pipeline/batch.py`). The file is a time-ordered
    stream: behaviour state (windowed counters, spam waves) carries from line to line, so a recorded
    log replays as live traffic did (lines whose timestamp goes backwards are counted and reported).
    """
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
    tenant_id, guild_for = _cli_tenant(tenant, policy is not None or lists is not None)
    if input is not None:
        _moderate_file(input, output, names, guild, workers, batch_size, progress_bar, tenant_id, guild_for)
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
    decision = service.decide_one(tenant_id, message, guild_for(message) or guild)
    out = json.dumps(render(message, decision), ensure_ascii=False)
    if output:
        output.write_text(out + "\n", "utf-8")
    else:
        typer.echo(out)


def _moderate_file(input: Path, output: Path | None, names: list[str], guild: Any, workers: int | None,
                   batch_size: int, progress_bar: bool, tenant_id: str = "cli", guild_for: Any = None) -> None:
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
                                   progress=progress.update, warn=lambda m: typer.echo(m, err=True),
                                   tenant_id=tenant_id, guild_for=guild_for)
    finally:
        progress.close()
        if output:
            sink.close()
    if output:
        typer.echo(f"wrote {result.decided} decisions to {output}"
                   + (f"; {result.invalid} invalid lines" if result.invalid else ""), err=True)
    if result.invalid:
        raise typer.Exit(1)


banks_app = typer.Typer(help="Manage a tenant's hash banks (known-bad images, PDQ).", no_args_is_help=True)
app.add_typer(banks_app, name="banks")
TenantOpt = Annotated[str, typer.Option("--tenant", help="tenant name")]


def _banks_store() -> Any:
    """The configured store (migrated), for the bank commands."""
    from pipeline.migrate import upgrade
    from pipeline.settings import get_settings
    from pipeline.store import Store

    settings = get_settings()
    upgrade(settings.database_url)
    return Store.from_url(settings.database_url, settings.api_key_pepper)


def _tenant_id(store: Any, tenant: str) -> str:
    tenant_id = store.tenants.id_for_name(tenant)
    if tenant_id is None:
        typer.echo(f"no tenant named {tenant!r} (create one with `heron keys create --tenant {tenant}`)", err=True)
        raise typer.Exit(2)
    return str(tenant_id)


def _bank_errors(fn: Any) -> Any:
    """HeronErrors (unknown bank, bad hash ...) as one line on stderr and exit status 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pipeline.errors import HeronError

        try:
            return fn(*args, **kwargs)
        except HeronError as exc:
            typer.echo(f"heron banks: {exc.message} ({exc.code})", err=True)
            raise typer.Exit(2) from None

    return wrapper


@banks_app.command("create")
@_bank_errors
def banks_create(
    name: Annotated[str, typer.Argument(help="bank name")],
    tenant: TenantOpt,
    category: Annotated[str, typer.Option("--category", help="taxonomy category matches count toward")],
    action: Annotated[str | None, typer.Option("--action", help="an action every match forces, e.g. block")] = None,
) -> None:
    """Create a bank whose matches count toward CATEGORY (and force ACTION, if given)."""
    store = _banks_store()
    bank = store.banks.create(_tenant_id(store, tenant), name, category, action, actor="cli")
    typer.echo(json.dumps({"name": bank.name, "category": bank.category, "action": bank.action}))


@banks_app.command("list")
@_bank_errors
def banks_list(tenant: TenantOpt) -> None:
    """The tenant's banks with their sizes."""
    store = _banks_store()
    for b in store.banks.list(_tenant_id(store, tenant)):
        typer.echo(json.dumps({"name": b.name, "category": b.category, "action": b.action, "size": b.size}))


def _recheck(store: Any, tenant_id: str, name: str, added: Any) -> int:
    from pipeline.images.retro import recheck_after_add
    from pipeline.settings import get_settings

    return len(recheck_after_add(store, tenant_id, name, added, get_settings().image_hash_retention_days))


@banks_app.command("add")
@_bank_errors
def banks_add(
    name: Annotated[str, typer.Argument(help="bank name")],
    files: Annotated[list[Path], typer.Argument(help="image files to hash and add")],
    tenant: TenantOpt,
    label: Annotated[str | None, typer.Option("--label", help="label stored with each hash")] = None,
) -> None:
    """Hash image FILEs (PDQ) and add them; earlier messages that match are revised."""
    from pipeline.images.decode import DecodeLimits, MediaRejected, decode_bytes
    from pipeline.images.pdq import MIN_QUALITY, hash_frame
    from pipeline.settings import get_settings
    from pipeline.store.banks import normalise_entry

    store = _banks_store()
    tenant_id = _tenant_id(store, tenant)
    store.banks.get(tenant_id, name)
    limits = DecodeLimits.from_settings(get_settings())
    entries = []
    failed = 0
    for f in files:
        try:
            decoded = decode_bytes(f.read_bytes(), limits)
        except (OSError, MediaRejected) as exc:
            typer.echo(f"{f}: skipped: {exc}", err=True)
            failed += 1
            continue
        h, q = hash_frame(decoded.frames[0])
        if q < MIN_QUALITY:
            typer.echo(f"{f}: skipped: hash quality {q} below {MIN_QUALITY} (too featureless to match)", err=True)
            failed += 1
            continue
        entries.append(normalise_entry(h, label or f.name, q))
    added = store.banks.add(tenant_id, name, entries, actor="cli")
    revised = _recheck(store, tenant_id, name, added)
    typer.echo(json.dumps({"added": len(added), "skipped": failed, "revised": revised}))
    if failed:
        raise typer.Exit(1)


@banks_app.command("import")
@_bank_errors
def banks_import(
    name: Annotated[str, typer.Argument(help="bank name")],
    csv_file: Annotated[Path, typer.Argument(help="CSV of hash,label (HMA-style header optional)")],
    tenant: TenantOpt,
) -> None:
    """Import PDQ hashes from CSV; earlier messages that match are revised."""
    from pipeline.store.banks import parse_csv

    store = _banks_store()
    tenant_id = _tenant_id(store, tenant)
    entries = parse_csv(csv_file.read_text("utf-8"))
    added = store.banks.add(tenant_id, name, entries, actor="cli")
    typer.echo(json.dumps({"added": len(added), "revised": _recheck(store, tenant_id, name, added)}))


@banks_app.command("export")
@_bank_errors
def banks_export(name: Annotated[str, typer.Argument(help="bank name")], tenant: TenantOpt) -> None:
    """Write the bank as CSV (signal_type,hash,label) to stdout."""
    from pipeline.store.banks import to_csv

    store = _banks_store()
    sys.stdout.write(to_csv(store.banks.content(_tenant_id(store, tenant), name)))


@banks_app.command("remove")
@_bank_errors
def banks_remove(
    name: Annotated[str, typer.Argument(help="bank name")],
    hashes: Annotated[list[str], typer.Argument(help="PDQ hashes to remove")],
    tenant: TenantOpt,
) -> None:
    """Remove hashes from a bank."""
    from pipeline.store.banks import normalise_entry

    store = _banks_store()
    n = store.banks.remove(_tenant_id(store, tenant), name, [normalise_entry(h).hash for h in hashes], actor="cli")
    typer.echo(json.dumps({"removed": n}))


def _cli_tenant(tenant: str | None, overridden: bool) -> tuple[str, Any]:
    """(tenant id, message -> GuildConfig | None) for `heron moderate`: "cli" and nothing without
    --tenant; with it, the tenant's id and its registered guilds from the configured store, as the
    API resolves them. None means: the --policy/--lists guild, else the platform default policy;
    a replayed log may name guilds that were never registered, and they get the platform default
    rather than an error."""

    def none(_m: Any) -> Any:
        return None

    if tenant is None:
        return "cli", none
    store = _banks_store()
    tenant_id = _tenant_id(store, tenant)
    if overridden:
        return tenant_id, none
    from pipeline.guilds import PLATFORM_GUILD

    known: dict[str, Any] = {}

    def guild_for(message: Any) -> Any:
        if not message.guild_id:
            return PLATFORM_GUILD
        if message.guild_id not in known:  # one lookup per guild, not per message
            known[message.guild_id] = store.guilds.get(tenant_id, message.guild_id)
        return known[message.guild_id]

    return tenant_id, guild_for


models_app = typer.Typer(help="The model registry: list, register, promote and roll back model versions "
                         "(docs/retraining.md).", no_args_is_help=True)
app.add_typer(models_app, name="models")
KindArg = Annotated[str, typer.Argument(help="model kind (text)")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="who is switching (audit log; default: cli:<user>)")]


def _registry() -> Any:
    from pipeline.models_registry import Registry

    return Registry.from_settings()


def _registry_errors(fn: Any) -> Any:
    """RegistryErrors as one line on stderr: exit 1 when the gate refused, 2 otherwise."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pipeline.models_registry import GateRefused, RegistryError

        try:
            return fn(*args, **kwargs)
        except GateRefused as exc:
            typer.echo(f"heron models: {exc}", err=True)
            raise typer.Exit(1) from None
        except RegistryError as exc:
            typer.echo(f"heron models: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _audit_hook(actor: str) -> Any:
    """Record a switch in the audit log (a platform row: tenant_id NULL) in the transaction that
    the serving-file write sits in, so a switch and its record stand or fall together."""
    import contextlib

    import sqlalchemy as sa

    from pipeline.models_registry import RegistryError
    from pipeline.settings import get_settings
    from pipeline.store.audit import write_audit

    try:
        store = _banks_store()
    except sa.exc.OperationalError as exc:
        raise RegistryError(f"cannot reach the database at {_redact(get_settings().database_url)} for the audit log "
                            f"({type(exc).__name__}); nothing was switched") from None

    @contextlib.contextmanager
    def hook(event: str, subject: str, details: dict[str, Any]) -> Any:
        with store.engine.begin() as conn:
            write_audit(conn, None, actor, event, subject, details)
            yield

    return hook


def _actor(actor: str | None) -> str:
    import getpass

    return actor or f"cli:{getpass.getuser()}"


@models_app.command("list")
@_registry_errors
def models_list(kind: Annotated[str, typer.Argument(help="model kind")] = "text") -> None:
    """Every version of KIND (and the bundled one), the serving one marked with *."""
    from pipeline.models_registry import BUNDLED

    reg = _registry()
    serving = reg.serving(kind)
    for v in [BUNDLED, *reg.versions(kind)]:
        info = reg.info(kind, v)
        labels = info.get("heads_labels_version") or info.get("encoder_labels_version")
        typer.echo(f"{'*' if v == serving else ' '} {v:<22} {info.get('artifact_version')}"
                   + (f" / {info['heads_version']}" if info.get("heads_version") else "")
                   + (f"  labels {labels}" if labels else "") + f"  {info['path']}")
    absent = "" if reg.serving_file.is_file() else " (absent: bundled serves)"
    typer.echo(f"serving file: {reg.serving_file}{absent}", err=True)


@models_app.command("add")
@_registry_errors
def models_add(kind: KindArg, directory: Annotated[Path, typer.Argument(help="an artifact folder")]) -> None:
    """Register an artifact folder (copied) as a version of KIND; prints the version."""
    typer.echo(_registry().add(kind, directory))


@models_app.command("promote")
@_registry_errors
def models_promote(
    kind: KindArg,
    version: Annotated[str, typer.Argument(help="the version to serve (`heron models list`)")],
    report: Annotated[Path | None, typer.Option("--report", help="the gate report of `heron eval candidate` for this "
                                                "version against the serving one")] = None,
    tolerance: Annotated[float | None, typer.Option(help="recompute the verdict with this F1 tolerance instead of the "
                                                    "report's")] = None,
    force: Annotated[bool, typer.Option("--force", help="promote although the gate failed or the report does not "
                                        "match (needs --reason; recorded)")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="why (required with --force; recorded)")] = None,
    actor: ActorOpt = None,
) -> None:
    """Serve VERSION if its gate report passes; recorded in serving.json and the audit log. Running
    servers and workers load it when they restart."""
    from pipeline.models_registry import RegistryError

    data = None
    if report is not None:
        try:
            data = json.loads(report.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read the report {report}: {exc}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{report} is not a gate report")
    who = _actor(actor)
    entry = _registry().promote(kind, version, report=data, report_path=str(report) if report else None,
                                tolerance=tolerance, force=force, reason=reason, actor=who, audit=_audit_hook(who))
    if entry["forced"]:
        typer.echo("FORCED past: " + "; ".join(entry["overridden"]), err=True)
    typer.echo(f"{kind} now serves {entry['to']} (was {entry['from']}); restart `heron serve` and `heron worker` "
               "processes to load it")


@models_app.command("rollback")
@_registry_errors
def models_rollback(
    kind: KindArg,
    reason: Annotated[str | None, typer.Option("--reason", help="why (recorded)")] = None,
    actor: ActorOpt = None,
) -> None:
    """Serve the version that served before the current one; recorded like a promotion."""
    who = _actor(actor)
    entry = _registry().rollback(kind, reason=reason, actor=who, audit=_audit_hook(who))
    typer.echo(f"{kind} rolled back to {entry['to']} (was {entry['from']}); restart `heron serve` and `heron worker` "
               "processes to load it")


@models_app.command("history")
@_registry_errors
def models_history(kind: KindArg) -> None:
    """Every switch of KIND recorded in serving.json, oldest first (JSON lines)."""
    for entry in _registry().history(kind):
        typer.echo(json.dumps(entry, sort_keys=True))


shadow_app = typer.Typer(help="Shadow mode: what a candidate model or policy would have decided.",
                         no_args_is_help=True)
app.add_typer(shadow_app, name="shadow")


@shadow_app.command("report")
def shadow_report(
    tenant: Annotated[str | None, typer.Option("--tenant", help="tenant name (default: every tenant)")] = None,
    since: Annotated[str | None, typer.Option("--since", help="only shadow decisions since then: 24h, 7d, 30m or "
                                              "an ISO date")] = None,
    version: Annotated[str | None, typer.Option("--version", help="only this shadow version")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the report as JSON here (and "
                                                "Markdown beside it, .md); default: Markdown to stdout")] = None,
) -> None:
    """Agreement with the live decisions, disagreements by category and by action, and precision
    estimated from the reviewed items, per shadow candidate (docs/shadow.md)."""
    import sqlalchemy as sa

    from pipeline.settings import get_settings
    from pipeline.shadow_report import build, markdown, parse_since
    from pipeline.store import Store
    from pipeline.store.reviewers import tenant_id_by_name
    from pipeline.store.shadow import ShadowDecisions

    try:
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        typer.echo(f"heron shadow report: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = get_settings()
    store = Store.from_url(settings.database_url, settings.api_key_pepper)
    try:
        tenant_id = None
        if tenant is not None:
            tenant_id = tenant_id_by_name(store.review.db, tenant)
            if tenant_id is None:
                typer.echo(f"heron shadow report: no tenant {tenant!r}", err=True)
                raise typer.Exit(2)
        shadows = ShadowDecisions.for_engine(store.engine)
        try:
            rows = shadows.rows(tenant_id, since_at, version)
            verdicts = shadows.final_verdicts(tenant_id)
        except sa.exc.DBAPIError as exc:
            typer.echo(f"heron shadow report: cannot read shadow decisions from {_redact(settings.database_url)} "
                       f"({type(exc.orig).__name__}); run `heron migrate` first", err=True)
            raise typer.Exit(2) from None
    finally:
        store.dispose()
    report = build(rows, verdicts, tenant=tenant, since=since_at)
    md = markdown(report)
    if output is None:
        typer.echo(md)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    output.with_suffix(".md").write_text(md, "utf-8")
    typer.echo(f"wrote {output} and {output.with_suffix('.md')}: {len(report['shadows'])} shadow version(s), "
               f"{sum(s['messages'] for s in report['shadows'])} messages", err=True)


def main() -> None:  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
