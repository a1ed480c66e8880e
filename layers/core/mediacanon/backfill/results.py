"""What a backfill batch returns (BatchResult), the report's counts and the constants the phases share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from mediacanon.adapters.cdn import CdnInvalidations

# where an object came from when a row's missing file is copied in from a read-only fallback bucket
FALLBACK_SOURCE = "mediacanon-fallback-source"

# the report's counts, in its order: what a batch says of each object and row
Count = Literal[
    "migrated",
    "linked",
    "repaired",
    "mirrored",
    "pruned",
    "missing",
    "orphan",
    "refused",
    "collision",
    "skipped",
    "failed",
    "invalidated",  # CDN paths the tasks invalidated (replaced or pruned CDN keys: mediacanon.adapters.cdn)
    "uninvalidated",  # CDN paths whose invalidation failed: one report item each, to invalidate by hand
]
REPORT_COUNTS: tuple[Count, ...] = get_args(Count)

# etag: what an orphan held when it was reported (`mediacanon.orphans` deletes it only while it holds that)
CSV_FIELDS = ["phase", "key", "outcome", "canonical_key", "detail", "etag"]


@dataclass
class BatchResult:
    counts: Counter[Count] = field(default_factory=Counter)
    items: list[dict[str, Any]] = field(default_factory=list)
    # the task's CloudFront invalidations (None: the stack has no distribution): the CDN keys it replaced or removed
    cdn: CdnInvalidations | None = field(default=None, repr=False, compare=False)

    def cdn_changed(self, key: str) -> None:
        """A CDN-bucket key whose object this batch replaced or removed: its path is invalidated at the task's end."""
        if self.cdn is not None:
            self.cdn.add_key(key)

    def add(self, count: Count, key: str, detail: str = "", canonical_key: str | None = None, phase: str = "objects") -> None:
        self.counts[count] += 1
        self.items.append({"phase": phase, "key": key, "outcome": count, "canonical_key": canonical_key, "detail": detail})

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "items": self.items}


# the state machine's phases (statemachines/backfill.asl.json) and their defaults
PHASES = ("objects", "rows", "mirror", "report")
DEFAULT_MAX_DELETES = 1000
ROWS_PER_RANGE = 10_000
