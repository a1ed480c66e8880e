"""The local group: the embedded default (a moto server and an embedded PostgreSQL) up, run, down, status, env."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mediacanon.cli.options import _load_map, _local_endpoints, _state_dir, config_option, database_option, use_endpoints
from mediacanon.cli.output import _fail, console


@click.group()
def local() -> None:
    """The embedded default: a moto server and an embedded PostgreSQL on this machine."""


@local.command("up")
@click.option("--fresh", is_flag=True, help="stop and wipe the previous local stack first (its buckets and database)")
@click.option("--template", default="template.yaml", show_default=True, type=click.Path(dir_okay=False))
@config_option
def local_up(fresh: bool, template: str, config: str) -> None:
    """Start (or reuse) the moto server and PostgreSQL; create template.yaml's buckets, rules and queues on it."""
    import shutil

    from mediacanon.local import embedded, localrun

    if fresh and _state_dir().exists():
        embedded.down(_state_dir())
        shutil.rmtree(_state_dir())
    watched = None
    if Path(config).exists():  # where the database names objects: the media map's file columns and the ledger
        media_map = _load_map(config)
        watched = embedded.Watched(tuple((m.table, m.column) for m in media_map.fields), (media_map.schema,))
    try:
        endpoints = embedded.up(_state_dir(), watched=watched)
    except embedded.StackLostError as exc:
        _fail(str(exc))
    console.print(f"AWS_ENDPOINT_URL={endpoints.endpoint_url}\nDATABASE_URL={endpoints.database_url}", highlight=False)
    if Path(config).exists():
        use_endpoints()
        stack = localrun.provision_media_map(_load_map(config), template, endpoint_url=endpoints.endpoint_url)
        console.print(
            f"provisioned from {template}: buckets {', '.join(stack.buckets)}; queues {', '.join(stack.queue_urls)}",
            highlight=False,
        )
    else:
        console.print(f"no media map at {config}: buckets and queues not provisioned (pass --config)", highlight=False)


@local.command("run")
@click.option("--until-idle/--follow", default=True, help="stop when the queues are empty, or keep polling")
@click.option("--timeout", type=float, default=None, help="seconds (default 600 with --until-idle, none with --follow)")
@click.option("--owner-wait", type=float, default=3.0, show_default=True, help="seconds an upload waits for its row")
@click.option("--retry-delay", type=int, default=1, show_default=True, help="seconds before a failed record returns")
@click.option("--template", default="template.yaml", show_default=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--progress-every",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="seconds between two progress lines on stderr when it is not a terminal (a terminal gets a live status line)",
)
@config_option
@database_option
def local_run(
    until_idle: bool,
    timeout: float | None,
    owner_wait: float,
    retry_delay: int,
    template: str,
    progress_every: float,
    config: str,
    database_url: str | None,
) -> None:
    """Feed the live path's queues to the three handlers, in this process, as Lambda's SQS event sources would."""
    from mediacanon.local import localrun

    url = use_endpoints(database_url)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not url or not endpoint:  # never provision or poll a real account from here
        _fail("the local stack is not up: run `mediacanon local up`")
    stack = localrun.provision_media_map(_load_map(config), template, endpoint_url=endpoint)  # idempotent
    # the handlers' structured logs, EMF metrics and warnings go where CloudWatch would keep them: a file, not the
    # terminal (localrun routes them there, Powertools' logger handlers included); progress goes to stderr
    _state_dir().mkdir(parents=True, exist_ok=True)
    log_path = _state_dir() / "lambda-logs.jsonl"
    try:
        with log_path.open("a", encoding="utf-8") as log:
            report = localrun.run(
                stack,
                config=config,
                database_url=url,
                owner_wait=owner_wait,
                until_idle=until_idle,
                timeout=timeout if timeout is not None else (600.0 if until_idle else None),
                retry_delay=retry_delay,
                log=log,
                progress_every=progress_every,
            )
    except localrun.IdleTimeout as exc:
        console.print(exc.report.line, highlight=False)
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    finally:
        localrun.shutdown()
    console.print(f"handler logs and metrics: {log_path}", highlight=False)
    rows = report.table()
    width = max(len(name) for name, _, _ in rows)
    for name, n, meaning in rows:
        console.print(f"  {name:<{width}} {n:>6}  {meaning}", highlight=False)
    console.print(report.line, highlight=False)
    sys.exit(1 if report.failed else 0)


@local.command("down")
def local_down() -> None:
    """Stop what `local up` started."""
    from mediacanon.local import embedded

    embedded.down(_state_dir())
    console.print("stopped")


@local.command("status")
def local_status() -> None:
    """Show what runs and where."""
    from mediacanon.local import embedded

    console.print_json(data=embedded.status(_state_dir()))


@local.command("env")
def local_env() -> None:
    """Print `export` lines for the running local stack (eval "$(mediacanon local env)")."""
    local_state = _local_endpoints()
    if not local_state:
        _fail("the local stack is not up: run `mediacanon local up`")
    click.echo(f"export AWS_ENDPOINT_URL={local_state['endpoint_url']}")
    click.echo(f"export DATABASE_URL='{local_state['database_url']}'")
    click.echo("export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1")
