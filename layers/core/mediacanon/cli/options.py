"""What the commands share: the --config and --database-url options, the endpoints (explicit, else the running
local stack's), the media map, the --phase, --since and --min-age parsing."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mediacanon.cli.errors import LOCAL_UP, _bad_database_url, _database_in_use, _one_line
from mediacanon.cli.output import _fail
from mediacanon.core import mediamap
from mediacanon.core.errors import ConfigError

PHASES = ("objects", "rows", "mirror", "report")  # mediacanon.backfill.PHASES (not imported: it pulls in the steps)
PLAN_ACTIONS = ("rename", "link", "mirror", "orphan", "refuse", "missing", "broken", "repair", "ok", "skip")  # plan.Action


class _PhasesCommand(click.Command):
    """Takes `--phase objects report` (the phases after one --phase, up to the next option) as well as
    `--phase objects --phase report`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_phases(args))


def spread_phases(args: Sequence[str]) -> list[str]:
    """`--phase a b` -> `--phase a --phase b`: bare words after a --phase value (this command has no arguments)."""
    out: list[str] = []
    after_phase = False
    it = iter(args)
    for arg in it:
        if arg == "--":
            out.append(arg)
            out.extend(it)
            break
        if arg == "--phase":
            out.append(arg)
            value = next(it, None)
            if value is not None:
                out.append(value)
            after_phase = value is not None
            continue
        if arg.startswith("-"):
            after_phase = arg.startswith("--phase=")
            out.append(arg)
            continue
        out.extend(["--phase", arg] if after_phase else [arg])
    return out


def _iso_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (fix: e.g. 2026-11-21T10:00:00+00:00, or `date -u -Iseconds`)"
        ) from None


def _check_database_url(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: the text itself cannot be parsed
        _fail(_bad_database_url(_one_line(str(exc))))
    port = str(parts.get("port", "5432"))
    if not all(p.strip().isdigit() for p in port.split(",")):
        _fail(_bad_database_url(f"port {port!r} is not a number"))
    _database_in_use.append(url)
    return url


def _need_database(database_url: str | None, why: str = "") -> str:
    url = use_endpoints(database_url)
    if not url:
        _fail(f"no database{why}: set DATABASE_URL, pass --database-url, or run {LOCAL_UP}")
    return _check_database_url(url)


def _state_dir() -> Path:
    return Path(os.environ.get("MEDIACANON_STATE_DIR", ".local"))


def _local_endpoints() -> dict[str, str]:
    state = _state_dir() / "state.json"
    if not state.exists():
        return {}
    data: dict[str, Any] = json.loads(state.read_text())
    return {k: v for k, v in data.items() if k in ("endpoint_url", "database_url") and v}


def use_endpoints(database_url: str | None = None) -> str | None:
    """Point boto3 and the database at the explicit endpoints, else at the running local stack."""
    local = _local_endpoints()
    if not os.environ.get("AWS_ENDPOINT_URL") and "endpoint_url" in local:
        os.environ["AWS_ENDPOINT_URL"] = local["endpoint_url"]
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return database_url or os.environ.get("DATABASE_URL") or local.get("database_url")


def _load_map(config: str) -> mediamap.MediaMap:
    try:
        return mediamap.load(config)
    except ConfigError as exc:
        _fail(str(exc))


def _check_fields(media_map: mediamap.MediaMap, fields: Sequence[str], option: str = "--field") -> None:
    names = [f.name for f in media_map.fields]
    unknown = [f for f in fields if f not in names]
    if unknown:
        raise click.BadParameter(
            f"unknown field {', '.join(map(repr, unknown))}: the media map has {', '.join(names)} "
            "(fix: pass one of those names; `mediacanon check-config` lists them)",
            param_hint=f"'{option}'",
        )


config_option = click.option(
    "--config",
    "config",
    envvar="MEDIACANON_CONFIG",
    default="mediamap.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="the media map (env MEDIACANON_CONFIG)",
)
database_option = click.option(
    "--database-url", envvar="DATABASE_URL", default=None, help="PostgreSQL conninfo (env DATABASE_URL)"
)


def _age(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    """`7d`, `36h`, `90m`, `0` -> a timedelta."""
    from datetime import timedelta

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", value)
    if not match:
        raise click.BadParameter(f"{value!r} is not an age (fix: e.g. 7d, 36h, 90m or 0)")
    unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "": "days"}[match.group(2)]
    return timedelta(**{unit: float(match.group(1))})
