"""What became of each local file: the outcomes, a report line (Item) and the run's summary."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum

from mediacanon.core.errors import PermanentError


class Outcome(StrEnum):
    UPLOADED = "uploaded"
    WOULD_UPLOAD = "would-upload"  # --dry-run
    PRESENT = "present"  # the primary bucket already holds these bytes (under the key or its canonical key)
    CONFLICT = "conflict"  # the key holds other bytes: left alone, never overwritten
    NOT_PICKED = "not-picked"  # another file of the same slug and field was picked
    NOT_AUDITED = "not-audited"  # the manifest does not let this slug in
    MISSING = "missing"  # a row names a file that neither S3 nor MEDIA_ROOT holds: reported, row untouched
    UNMAPPED = "unmapped"  # no staging pattern of the media map names this file
    INVALID = "invalid"  # bad input: unreadable, symlink loop, zero bytes, not an image, name not UTF-8, manifest
    FAILED = "failed"  # the upload itself failed; a second run retries it


SUMMARY_ORDER = tuple(Outcome)


class BadInput(PermanentError):
    """A local file or manifest line that cannot be uploaded; the message says what is wrong and the fix."""


@dataclass(frozen=True)
class Item:
    """One line of the report: a local file (or a manifest line) and what became of it."""

    source: str
    outcome: Outcome
    reason: str = ""
    key: str | None = None
    field: str | None = None
    slug: str | None = None
    size: int | None = None
    content_type: str | None = None
    md5: str | None = None

    def row(self) -> list[str]:
        values = (
            self.source,
            self.outcome.value,
            self.reason,
            self.key,
            self.field,
            self.slug,
            self.size,
            self.content_type,
            self.md5,
        )
        return ["" if v is None else str(v) for v in values]


@dataclass
class Summary:
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    bytes_uploaded: int = 0

    def add(self, item: Item) -> None:
        self.counts[item.outcome] += 1
        if item.outcome == Outcome.UPLOADED and item.size:
            self.bytes_uploaded += item.size

    @property
    def line(self) -> str:
        return "UPLOAD | " + " ".join(f"{o.value}={self.counts[o]}" for o in SUMMARY_ORDER)

    @property
    def ok(self) -> bool:
        return self.counts[Outcome.FAILED] == 0


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text that can always be printed and written to CSV: undecodable bytes shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
