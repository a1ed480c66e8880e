"""The project's errors.

Two families matter to callers: a ``RetryableError`` fails the SQS record so the queue redelivers it
(throttling, timeouts, a row not committed yet); a ``PermanentError`` will not get better by retrying
(an unsafe key, a bad media map, a missing table) and is reported instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class MediacanonError(Exception):
    """Base of every error mediacanon raises on purpose."""


class RetryableError(MediacanonError):
    """Transient: the same call may succeed later."""


class PermanentError(MediacanonError):
    """Retrying the same input will fail the same way."""


class ConfigError(PermanentError):
    """The media map is invalid. Names the file, the field, what is wrong and how to fix it."""

    def __init__(self, path: str, where: str, problem: str, fix: str) -> None:
        self.path = path
        self.where = where
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {where}: {problem} (fix: {fix})")


class ConfigErrors(ConfigError):
    """Several problems in one media map, all reported at once; reads as the first where one is expected."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.path, first.where, first.problem, first.fix)
        self.errors = errors
        lines = [f"  {e.where}: {e.problem} (fix: {e.fix})" for e in errors]
        self.args = (f"{first.path}: {len(errors)} problems:\n" + "\n".join(lines),)


class UnsafeKeyError(PermanentError):
    """An object key mediacanon refuses to touch."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"refused key {key!r}: {reason}")


class UnmappedKeyError(PermanentError):
    """No field mapping of the media map covers this key."""

    def __init__(self, key: str, reason: str = "no field mapping covers this key") -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"unmapped key {key!r}: {reason}")


class NotFoundError(PermanentError):
    """An object or database item that should exist does not."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"not found: {what}")


class BucketNotFound(PermanentError):
    """S3 answered NoSuchBucket: a bucket the media map names is not there (a configuration error, never retried)."""


class PreconditionFailed(PermanentError):
    """A conditional write lost its race (the target changed under us)."""


class UnsupportedByStore(PermanentError):
    """The store answered 501 NotImplemented: an S3-compatible store (LocalStack, MinIO, ...) lacks a feature S3 has.
    Retrying the same request never helps."""


class ConditionalDeleteUnsupported(UnsupportedByStore):
    """The bucket's store does not take If-Match on DeleteObject (S3 general purpose buckets do, since 2025-09)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        super().__init__(
            f"s3://{bucket} does not take If-Match on DeleteObject (501 NotImplemented): sources there are retired by "
            "compare-then-delete (policies.retire: delete; keep the bucket versioned, so the bytes stay recoverable) "
            "or kept and reported (policies.retire: delete-if-match)"
        )


@contextmanager
def translating(
    what: str,
    catch: type[BaseException] | tuple[type[BaseException], ...],
    translate: Callable[[Any, str], MediacanonError],
) -> Iterator[None]:
    """Raise a driver's error (`catch`) as the project's: `translate(exc, what)` says which, retryable or permanent,
    by the driver's codes. Each adapter keeps its own translation; this is the one way they apply it."""
    try:
        yield
    except catch as exc:
        raise translate(exc, what) from exc
