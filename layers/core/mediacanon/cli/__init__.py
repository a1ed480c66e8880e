"""The `mediacanon` command.

Every command reads `--config` (or MEDIACANON_CONFIG), `AWS_ENDPOINT_URL` and `DATABASE_URL`; when those two are
unset and `mediacanon local up` has started the embedded default, its endpoints are used.
"""

from __future__ import annotations

from typing import Any

import click

from mediacanon.cli.errors import LOCAL_UP, describe_error, task_error
from mediacanon.cli.options import (
    PHASES,
    PLAN_ACTIONS,
    config_option,
    database_option,
    spread_phases,
    use_endpoints,
)
from mediacanon.cli.output import EXIT_FAILED, EXIT_REFUSED, EXIT_USAGE, _fail, _say, console, err_console


class _Main(click.Group):
    """The command group: maps the failures a user can cause or meet (a bad media map, a database or an endpoint
    that is down, a failed AWS call) to `error: ...` on stderr and exit 1. Anything else is a bug: its traceback shows."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            message = describe_error(exc)
            if message is None:
                raise
            _fail(message)


@click.group(cls=_Main)
@click.version_option(package_name="mediacanon")
def main() -> None:
    """mediacanon: canonical media keys for Django in S3, its CDN mirror and the database, kept in agreement."""


# the commands, by topic; imported here so that `main` has them (each module defines, this one registers)
from mediacanon.cli import backfill, db, init, inspect, local, upload  # noqa: E402

for _command in (
    inspect.check_config,
    inspect.explain,
    inspect.plan,
    inspect.verify_command,
    backfill.backfill_command,
    backfill.rollback_command,
    backfill.orphans_command,
    backfill.report_command,
    upload.upload_command,
    db.db,
    local.local,
    init.init_command,
):
    main.add_command(_command)
del _command

__all__ = [
    "EXIT_FAILED",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "LOCAL_UP",
    "PHASES",
    "PLAN_ACTIONS",
    "_Main",
    "_fail",
    "_say",
    "config_option",
    "console",
    "database_option",
    "describe_error",
    "err_console",
    "main",
    "spread_phases",
    "task_error",
    "use_endpoints",
]
