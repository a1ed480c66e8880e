"""Expected failures: the one-line message (what failed: detail (fix: ...)) for each a user can cause or meet,
never a traceback; and a failed execution's error, one line."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

from mediacanon.core.errors import ConfigError, MediacanonError, RetryableError

LOCAL_UP = "`mediacanon local up`"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


_database_in_use: list[str] = []  # the conninfo the command uses (from --database-url, DATABASE_URL or local up)


def _database_where() -> str:
    """Where the database settings come from, for a message: the variable or option, and its host/port/dbname."""
    url = _database_in_use[-1] if _database_in_use else os.environ.get("DATABASE_URL")
    where = "DATABASE_URL (or --database-url)"
    if not url:
        return where
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # a malformed URL is reported by _check_database_url
        return where
    target = f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', parts.get('user', ''))}"
    return f"{where} {target}"


def _endpoint_where() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return f"AWS_ENDPOINT_URL {endpoint}" if endpoint else "AWS (no AWS_ENDPOINT_URL set)"


def describe_error(exc: BaseException) -> str | None:
    """The one-line message (what failed: detail (fix: ...)) for an expected failure; None for a bug."""
    import psycopg
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )

    chain = list(_chain(exc))
    ours = next((e for e in chain if isinstance(e, MediacanonError)), None)
    context = f" ({_one_line(str(ours))})" if ours is not None and ours is not exc else ""
    for cause in chain:
        if isinstance(cause, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError | ReadTimeoutError):
            fix = (
                f"the emulator has stopped or never ran: start it ({LOCAL_UP}) or correct AWS_ENDPOINT_URL, then run the "
                "same command again"
                if os.environ.get("AWS_ENDPOINT_URL")
                else "check the network and AWS_DEFAULT_REGION, then run the same command again"
            )
            return f"cannot reach {_endpoint_where()}: {_one_line(str(cause))}{context} (fix: {fix})"
        if isinstance(cause, NoCredentialsError | NoRegionError):
            return (
                f"AWS is not configured: {_one_line(str(cause))} (fix: set AWS_PROFILE or AWS credentials and AWS_DEFAULT_REGION)"
            )
        if isinstance(cause, psycopg.OperationalError):
            return (
                f"the database refuses the connection ({_database_where()}): {_one_line(str(cause))}{context} "
                f"(fix: start PostgreSQL or correct DATABASE_URL: host, port, user, password, database name; {LOCAL_UP} "
                "runs one)"
            )
        if isinstance(cause, psycopg.ProgrammingError) and ("connection info" in str(cause) or "percent-encoded" in str(cause)):
            return _bad_database_url(_one_line(str(cause)))
        if isinstance(cause, ClientError) and ours is None:
            error = cause.response.get("Error", {})
            return (
                f"AWS refused {cause.operation_name}: {error.get('Code', '?')}: {_one_line(error.get('Message', ''))} "
                "(fix: check the ARN or name given, the region and your credentials' permissions)"
            )
    if isinstance(exc, ConfigError):
        return str(exc)  # file: place: problem (fix: ...)
    if ours is not None:
        message = _one_line(str(ours))
        if "(fix:" in message or "fix:" in message:
            return message
        if isinstance(ours, RetryableError):
            return f"{message} (fix: this may pass on its own: run the same command again)"
        return message
    return None


def _bad_database_url(detail: str) -> str:
    return (
        f"DATABASE_URL (or --database-url) is not a PostgreSQL URL or conninfo: {detail} "
        "(fix: use postgresql://USER:PASSWORD@HOST:5432/DBNAME, percent-encoding special characters)"
    )


_FIELD = r'"{}"\s*:\s*("(?:[^"\\]|\\.)*")'


_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "Could not connect to the endpoint")


def _endpoint_gone(error: str) -> bool:
    """Whether a failed execution failed because its endpoint went away: the task's error says it could not connect,
    and the endpoint (a local emulator) does not answer now either."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not any(text in error for text in _UNREACHABLE):
        return False
    if not endpoint:
        return True
    from mediacanon.local.sfnwatch import endpoint_answers

    return not endpoint_answers(endpoint)


def task_error(error: str) -> str:
    """A failed execution's error, one line: `ErrorType: message` of the Lambda error a task failed with, not the
    JSON (its stack trace escaped) that Step Functions carries as the cause; the cause itself for other errors.
    Takes `error: cause` as mediacanon.local.sfnlocal gives it, which may be cut short."""
    from mediacanon.backfill import _child_error

    name, _, cause = error.partition(": ")
    text = _child_error({"Error": name, "Cause": cause})
    if cause.lstrip().startswith("{") and text == f"{name}: {cause}":  # JSON cut short: read the leading fields
        found = {}
        for field in ("errorType", "errorMessage"):
            match = re.search(_FIELD.format(field), cause)
            if match:
                found[field] = json.loads(match.group(1))
        if "errorMessage" in found:
            text = f"{found.get('errorType', name)}: {found['errorMessage']}"
    return _one_line(text)
