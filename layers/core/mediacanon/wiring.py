"""The one place that builds Steps from its adapters, for every caller: the three live handlers and the backfill's
task handler (functions/*/app.py), the local runner and the CLI.

`load_settings` reads what a Lambda function is configured with (the media map, the database) once at cold start;
`connect` builds the adapters (S3, the database, the ledger) for a media map and a database; `Stores.steps` puts
them together. The live handlers share one cached `live_steps()` per execution environment, rebuilt by
`refresh_live_steps` when a rotated secret or an edited media map reaches it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.core import mediamap
from mediacanon.core.errors import ConfigError
from mediacanon.steps import Steps

if TYPE_CHECKING:
    import psycopg
    from aws_lambda_powertools import Logger
    from psycopg_pool import ConnectionPool

# How long a cold start's secret and media map stay cached (Powertools parameters): a rotated password or an
# edited map reaches a warm environment within this, without a call per invocation.
PARAMETER_MAX_AGE = 300


@dataclass(frozen=True)
class Settings:
    media_map: mediamap.MediaMap
    database_url: str = field(repr=False)  # holds the password when built from the secret: never in a log line
    owner_wait_seconds: float


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read once at cold start; a missing setting fails loudly here, not at the first record."""
    env = dict(os.environ) if env is None else env
    if env.get("MEDIACANON_CONFIG"):
        media_map = _load_file(env["MEDIACANON_CONFIG"])
    elif env.get("MEDIACANON_MEDIA_MAP_PARAMETER"):
        name = env["MEDIACANON_MEDIA_MAP_PARAMETER"]
        text = _parameters("ssm").get_parameter(name, max_age=PARAMETER_MAX_AGE)
        media_map = _parsed(("ssm", name, text), lambda: mediamap.parse(_yaml(text), source=f"ssm:{name}"))
    else:
        raise ConfigError(
            "environment",
            "MEDIACANON_CONFIG",
            "no media map configured",
            "set MEDIACANON_MEDIA_MAP_PARAMETER (SSM parameter name) or MEDIACANON_CONFIG (a file)",
        )
    if env.get("DATABASE_URL"):
        database_url = env["DATABASE_URL"]
    elif env.get("MEDIACANON_DB_SECRET_ARN"):
        parameters = _parameters("secrets")
        secret = parameters.get_secret(env["MEDIACANON_DB_SECRET_ARN"], transform="json", max_age=PARAMETER_MAX_AGE)
        database_url = _conninfo_from_secret(secret, host=env.get("MEDIACANON_DB_HOST") or None)
    else:
        raise ConfigError(
            "environment",
            "MEDIACANON_DB_SECRET_ARN",
            "no database configured",
            "set MEDIACANON_DB_SECRET_ARN (an RDS-style secret) or DATABASE_URL",
        )
    return Settings(media_map, database_url, float(env.get("MEDIACANON_OWNER_WAIT_SECONDS", "300")))


def _parameters(kind: str) -> Any:
    """Powertools' parameters, its SSM ("ssm") or Secrets Manager ("secrets") provider built on boto3's default
    session first. get_parameter / get_secret use the provider in parameters.DEFAULT_PROVIDERS (whose cache holds
    the values for max_age), building it on a new boto3 session when there is none, and each new session parses
    botocore's endpoint data (endpoints.json, 1.2 MB) again at cold start. The default session is the S3 client's:
    parsed once (bench/cold_start.py)."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    if kind not in DEFAULT_PROVIDERS:
        import boto3

        if kind == "ssm":
            DEFAULT_PROVIDERS[kind] = parameters.SSMProvider(boto3_client=boto3.client("ssm"))
        else:
            DEFAULT_PROVIDERS[kind] = parameters.SecretsProvider(boto3_client=boto3.client("secretsmanager"))
    return parameters


# The media map last parsed, by what it was parsed from: each invocation's refresh_live_steps reads the settings
# again, and an unchanged text (or file) is not parsed (YAML, then validated) again.
_last_parsed: list[tuple[Any, mediamap.MediaMap]] = []


def _parsed(source: Any, parse: Any) -> mediamap.MediaMap:
    if _last_parsed and _last_parsed[0][0] == source:
        return _last_parsed[0][1]
    media_map: mediamap.MediaMap = parse()
    _last_parsed[:] = [(source, media_map)]
    return media_map


def _load_file(path: str) -> mediamap.MediaMap:
    """mediamap.load(path), not again while the file holds the same bytes."""
    try:
        content = Path(path).read_bytes()
    except OSError:
        return mediamap.load(path)  # its error, as it says it
    return _parsed(("file", path, content), lambda: mediamap.load(path))


def _yaml(text: Any) -> Any:
    import yaml

    return yaml.safe_load(str(text))


def _conninfo_from_secret(secret: Any, host: str | None = None) -> str:
    """An RDS / Secrets Manager database secret (host, port, username, password, dbname) as a conninfo; `host`
    (an RDS Proxy endpoint, MEDIACANON_DB_HOST) replaces the secret's own."""
    from psycopg.conninfo import make_conninfo

    if not isinstance(secret, dict):
        raise ConfigError("MEDIACANON_DB_SECRET_ARN", "secret", "is not a JSON object", "store an RDS-style JSON secret")
    missing = [k for k in ("username", "password") if k not in secret] + ([] if host or "host" in secret else ["host"])
    if missing:  # names the keys only: the secret's values never reach an error message
        raise ConfigError("MEDIACANON_DB_SECRET_ARN", "secret", f"lacks {missing}", "store an RDS-style JSON secret")
    return make_conninfo(
        host=host or secret["host"],
        port=str(secret.get("port", 5432)),
        user=secret["username"],
        password=secret["password"],
        dbname=secret.get("dbname", "postgres"),
    )


@dataclass(frozen=True)
class Stores:
    """The adapters for one media map: the buckets (S3), the Django database, and mediacanon's ledger in it."""

    media_map: mediamap.MediaMap
    s3: S3Adapter
    db: Database
    ledger: Ledger

    def steps(self, *, owner_wait_seconds: float = 0.0) -> Steps:
        """The steps on these stores. A backfill never waits for a row (0); the live path waits for Django to
        save the row it stores the file for (MEDIACANON_OWNER_WAIT_SECONDS)."""
        return Steps(self.media_map, self.s3, self.db, self.ledger, owner_wait_seconds=owner_wait_seconds)

    def for_execution(self, execution: str) -> Stores:
        """The same stores, with a ledger whose entries name a backfill's execution (what rollback reverses)."""
        return replace(self, ledger=Ledger(self.db, self.media_map.schema, execution=execution))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    media_map: mediamap.MediaMap,
    database: str | Database | psycopg.Connection[Any] | ConnectionPool[Any],
    *,
    s3: S3Adapter | None = None,
    execution: str | None = None,
) -> Stores:
    """The stores of a media map on a database (a conninfo, a connection, a pool or a Database) and S3 (an adapter
    on boto3's default client unless given). Nothing connects until it is used."""
    db = database if isinstance(database, Database) else Database(database)
    return Stores(media_map, s3 if s3 is not None else S3Adapter(), db, Ledger(db, media_map.schema, execution=execution))


# -- the live handlers' Steps: one per execution environment --------------------------------------------------------

_built_from: list[Settings] = []  # the settings the cached Steps was built from


@cache
def live_steps() -> Steps:
    """The Steps of this execution environment, built once (adapters, one database connection) and reused across
    invocations; refresh_live_steps() rebuilds it when its settings change."""
    settings = load_settings()
    _built_from[:] = [settings]
    return connect(settings.media_map, settings.database_url).steps(owner_wait_seconds=settings.owner_wait_seconds)


def refresh_live_steps(logger: Logger | None = None) -> None:
    """Rebuild the cached Steps when its settings changed, so a rotated database secret or an edited media map
    reaches a warm environment once Powertools' cache expires (PARAMETER_MAX_AGE), not at its next cold start.
    Between changes this reads the cached parameters only: no AWS call, the same connection.

    When the new settings cannot be read (SSM or Secrets Manager unreachable, a media map edited into an
    invalid one), the environment keeps working with the settings it has: a cold start would fail loudly."""
    if not live_steps.cache_info().currsize:
        return
    try:
        fresh = load_settings()
    except Exception as exc:
        # Powertools' parameters package, for its errors only when there is one: a media map from a file never
        # imports it otherwise (~5 ms of every first record)
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

        if not isinstance(exc, (GetParameterError, TransformParameterError, ConfigError)):
            raise
        if logger is not None:
            logger.warning("settings not refreshed; keeping the current ones", extra={"error": str(exc)})
        return
    if _built_from and fresh == _built_from[0]:
        return
    forget_live_steps()
    live_steps()


def forget_live_steps() -> None:
    """Drop the cached Steps (closing its database connection): the next call builds it from the settings anew."""
    if live_steps.cache_info().currsize:
        live_steps().db.close()
    live_steps.cache_clear()
