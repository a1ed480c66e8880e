"""The embedded default: a moto server and an embedded PostgreSQL on this machine, no AWS account, no Docker.

Used by `mediacanon local up|down|status`, `make demo` and the test fixtures. The servers run detached (their
own session), so they outlive the command that started them; what runs where is kept in `<state_dir>/state.json`.

PostgreSQL comes from pgserver, which has no Python 3.13 wheel: it runs through a Python that has it
(MEDIACANON_PGSERVER_PYTHON, else `<repo>/.venv-pg/bin/python`, which `make setup` builds). DATABASE_URL, when
set, is used instead and nothing is started for it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediacanon.core.errors import MediacanonError

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}}

# Run by the pgserver Python. get_server() initialises the data directory on first use and reuses a running
# server; cleanup_mode=None leaves the server running after this short-lived process exits.
_PG_START = """
import sys, pgserver
print(pgserver.get_server(sys.argv[1], cleanup_mode=None).get_uri())
"""
# As root, pgserver runs postgres as the OS user 'pgserver', and pg_ctl refuses to run as root: use its helper.
_PG_STOP = """
import os, sys
from pathlib import Path
from pgserver._commands import pg_ctl
pg_ctl(["-w", "-m", "fast", "stop"], pgdata=Path(sys.argv[1]), user="pgserver" if os.geteuid() == 0 else None, timeout=30)
"""


class EmbeddedError(MediacanonError):
    """The local stack could not be started or stopped; the message says what to look at."""


class StackLostError(EmbeddedError):
    """The moto server of the local stack is gone (it keeps buckets, objects and queues in memory only), while the
    embedded PostgreSQL kept its rows and ledger: a new, empty moto beside that database would contradict it."""


@dataclass(frozen=True)
class Endpoints:
    endpoint_url: str
    database_url: str


def find_repo(start: Path | None = None) -> Path:
    """The directory holding pyproject.toml, searched upward from `start` (default: the working directory)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    raise EmbeddedError(f"no pyproject.toml above {here}: run from the mediacanon checkout or pass repo=")


def pgserver_python(repo: Path | None = None) -> Path:
    configured = os.environ.get("MEDIACANON_PGSERVER_PYTHON")
    python = Path(configured) if configured else find_repo(repo) / ".venv-pg" / "bin" / "python"
    if not python.exists():
        raise EmbeddedError(
            f"{python} does not exist: run `make setup` (it builds .venv-pg with pgserver) "
            "or set MEDIACANON_PGSERVER_PYTHON, or set DATABASE_URL to use another PostgreSQL"
        )
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a stopped server lingers as a zombie until its parent reaps it (this process, or an init that may be slow
    # to): a zombie serves nothing
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited:
            return False
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: kill(0) succeeded, so it exists


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not condition():
        if time.monotonic() > deadline:
            raise EmbeddedError(f"{what} (waited {timeout:.0f}s)")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


# -- moto ----------------------------------------------------------------------------------------------------------


def _moto_config(endpoint_url: str, config: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """GET (or POST, with `config`) moto's own config endpoint; None when nothing answers there."""
    data = json.dumps(config).encode() if config is not None else None
    request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 endpoint
        f"{endpoint_url}/moto-api/config",
        data=data,
        method="POST" if data else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - our own http://127.0.0.1 endpoint
            result: dict[str, Any] = json.loads(response.read())
            return result
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def start_moto(state_dir: Path, port: int | None = None) -> tuple[str, int]:
    """Start a detached moto server; returns (endpoint_url, pid) once it answers, with Step Functions executing ASL."""
    # moto's own server, with the delete-marker events moto does not send (mediacanon.local.motoserver)
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise EmbeddedError("moto's server is not installed in this Python: install moto[server]") from exc
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    endpoint_url = f"http://127.0.0.1:{port}"
    log_path = state_dir / f"moto-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mediacanon.local.motoserver", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready() -> bool:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise EmbeddedError(f"moto_server exited with {process.returncode} (log {log_path}):\n{tail}")
        return _moto_config(endpoint_url) is not None

    try:
        _wait(ready, START_TIMEOUT, f"moto_server did not answer on {endpoint_url}; see {log_path}")
        # moto 5.2 does not echo the stepfunctions setting back: a 2xx answer to the POST is all there is to check
        if _moto_config(endpoint_url, MOTO_CONFIG) is None:
            raise EmbeddedError(f"moto at {endpoint_url} refused {MOTO_CONFIG}; see {log_path}")
    except BaseException:
        _terminate(process.pid)
        raise
    return endpoint_url, process.pid


def stop_moto(pid: int | None) -> None:
    if _alive(pid):
        assert pid is not None
        _terminate(pid)


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        _wait(lambda: not _alive(pid), STOP_TIMEOUT, f"process {pid} ignored SIGTERM")
    except EmbeddedError:
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _alive(pid), STOP_TIMEOUT, f"process {pid} survived SIGKILL")


# -- PostgreSQL ----------------------------------------------------------------------------------------------------


def start_postgres(datadir: Path, *, repo: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL in `datadir`; returns its URI (a unix-socket one)."""
    python = pgserver_python(repo)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [str(python), "-c", _PG_START, str(datadir.resolve())],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedError(f"pgserver did not start PostgreSQL in {datadir} within {START_TIMEOUT:.0f}s") from exc
    uri = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not uri.startswith("postgresql://"):
        log = datadir / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedError(f"pgserver failed in {datadir} (exit {done.returncode}):\n{done.stderr[-2000:]}\n{tail}")
    return uri


def postgres_pid(datadir: Path) -> int | None:
    """The postmaster's pid from postmaster.pid, if it still runs."""
    try:
        pid = int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def stop_postgres(datadir: Path, *, repo: Path | None = None) -> None:
    if postgres_pid(datadir) is None:
        return
    done = subprocess.run(
        [str(pgserver_python(repo)), "-c", _PG_STOP, str(datadir.resolve())],
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT * 3,
        check=False,
    )
    if done.returncode != 0:
        raise EmbeddedError(f"pg_ctl stop failed for {datadir}:\n{done.stderr[-2000:]}")


# -- the stack -----------------------------------------------------------------------------------------------------


def _read_state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "state.json"
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_dir / "state.json")  # readers (`mediacanon local env`) never see half a file


def up(state_dir: Path, *, port: int | None = None, repo: Path | None = None, watched: Watched | None = None) -> Endpoints:
    """Start the moto server and PostgreSQL (unless DATABASE_URL is set), or reuse the running ones.

    moto keeps everything in memory: a moto process of this state dir that is gone (it died, or `down` stopped it)
    took its buckets, objects and queues with it, while the embedded PostgreSQL kept its data on disk. When that
    database holds rows, starting a new, empty moto beside it would leave rows and a ledger naming objects no bucket
    holds: `up` refuses (StackLostError) and names `--fresh`, which starts both over. `watched` says where the
    database names objects (the media map's file columns, the ledger's schema; see `remembered_rows`)."""
    state_dir = state_dir.resolve()
    state = _read_state(state_dir)
    moto = state.get("moto", {})
    reusable = _alive(moto.get("pid")) and _moto_config(moto.get("endpoint_url", "")) is not None
    external = os.environ.get("DATABASE_URL")
    datadir = state_dir / "pgdata"
    database_url = external or start_postgres(datadir, repo=repo)
    restart = not reusable or (port is not None and moto.get("port") != port)
    if restart and moto.get("pid") and not external:
        _refuse_if_remembered(state_dir, moto, database_url, watched)
    if restart:
        if reusable:
            stop_moto(moto.get("pid"))
        endpoint_url, pid = start_moto(state_dir, port)
        moto = {"pid": pid, "port": int(endpoint_url.rsplit(":", 1)[1]), "endpoint_url": endpoint_url}

    postgres: dict[str, Any] = {"external": True} if external else {"external": False, "datadir": str(datadir)}
    _write_state(
        state_dir, {"moto": moto, "postgres": postgres, "endpoint_url": moto["endpoint_url"], "database_url": database_url}
    )
    return Endpoints(moto["endpoint_url"], database_url)


def _refuse_if_remembered(state_dir: Path, moto: dict[str, Any], database_url: str, watched: Watched | None) -> None:
    """Raise StackLostError when the database names objects while the moto server that held them is gone."""
    remembered = remembered_rows(database_url, watched)
    if not remembered:
        return
    tables = ", ".join(f"{name} ({n})" for name, n in list(remembered.items())[:4])
    more = f" and {len(remembered) - 4} more tables" if len(remembered) > 4 else ""
    raise StackLostError(
        f"the local moto server (pid {moto.get('pid')}, {moto.get('endpoint_url')}) is gone and its buckets, objects "
        f"and queues with it (moto keeps them in memory), but the database in {state_dir / 'pgdata'} still holds "
        f"rows: {tables}{more} (fix: `mediacanon local up --fresh` starts both over and deletes that database too)"
    )


# Django's own bookkeeping, filled by `migrate`: it names no file
_BOOKKEEPING = ("django_migrations", "django_content_type", "auth_permission")


@dataclass(frozen=True)
class Watched:
    """What in the database names objects: file columns (table, column) and mediacanon's own schema (the ledger)."""

    columns: tuple[tuple[str, str], ...] = ()
    schemas: tuple[str, ...] = ()


def remembered_rows(database_url: str, watched: Watched | None = None) -> dict[str, int]:
    """Where the database names objects, with how many rows (up to 1000 each: whether it remembers anything, not
    how much): the rows of `watched`'s file columns that hold a name and every table of its schemas; without
    `watched`, every table outside PostgreSQL's own schemas but Django's bookkeeping. Tables not there count 0."""
    import psycopg
    from psycopg import sql

    out: dict[str, int] = {}
    with psycopg.connect(database_url, connect_timeout=10, autocommit=True) as conn:
        listed = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg_toast%' "
            "ORDER BY table_schema, table_name"
        ).fetchall()
        queries: list[tuple[str, sql.Composable]] = []
        if watched is None:
            for schema, table in listed:
                if table not in _BOOKKEEPING:
                    queries.append((f"{schema}.{table}", sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(schema, table))))
        else:
            names = {(schema, table) for schema, table in listed}
            for table, column in watched.columns:
                schema, _, name = table.rpartition(".")
                if (schema or "public", name) in names:
                    where = sql.SQL("SELECT 1 FROM {} WHERE coalesce({}, '') <> ''").format(
                        sql.Identifier(schema or "public", name), sql.Identifier(column)
                    )
                    queries.append((f"{table}.{column}", where))
            for schema, table in listed:
                if schema in watched.schemas:
                    queries.append((f"{schema}.{table}", sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(schema, table))))
        for label, query in queries:
            row = conn.execute(sql.SQL("SELECT count(*) FROM ({} LIMIT 1000) AS t").format(query)).fetchone()
            if row and row[0]:
                out[label] = int(row[0])
    return out


def down(state_dir: Path, *, repo: Path | None = None) -> None:
    """Stop what `up` started (an external DATABASE_URL is left alone). The database's data stays on disk; moto's
    buckets, objects and queues do not (moto keeps them in memory): the next `up` refuses to start an empty moto
    beside a database that holds rows, and `up --fresh` starts both over."""
    state_dir = state_dir.resolve()
    state = _read_state(state_dir)
    if not state:
        return
    stop_moto(state.get("moto", {}).get("pid"))
    postgres = state.get("postgres", {})
    if not postgres.get("external") and postgres.get("datadir"):
        stop_postgres(Path(postgres["datadir"]), repo=repo)
    _write_state(state_dir, {**state, "endpoint_url": None, "database_url": None})


def status(state_dir: Path) -> dict[str, Any]:
    state_dir = state_dir.resolve()
    state = _read_state(state_dir)
    moto = state.get("moto", {})
    postgres = state.get("postgres", {})
    moto_running = _alive(moto.get("pid")) and _moto_config(moto.get("endpoint_url", "")) is not None
    if postgres.get("external"):
        pg: dict[str, Any] = {"external": True, "running": None}
    else:
        pid = postgres_pid(Path(postgres["datadir"])) if postgres.get("datadir") else None
        pg = {"external": False, "running": pid is not None, "pid": pid, "datadir": postgres.get("datadir")}
    return {
        "state_dir": str(state_dir),
        "moto": {"running": moto_running, "pid": moto.get("pid"), "endpoint_url": moto.get("endpoint_url")},
        "postgres": pg,
        "endpoint_url": state.get("endpoint_url"),
        "database_url": state.get("database_url"),
    }
