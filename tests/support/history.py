"""What happened, recorded while steps run, for the promises the state alone cannot show (see
mediacanon.checks.invariants for what it can).

- `History`: facts recorded while steps run (every delete and write an S3 adapter issued, with the rows that
  referenced the key at that moment; every row swap with what the buckets held at that moment).
  I1: a swap moved a row only to a key both buckets held then. I2: a primary key was deleted only while no row
  referenced it; nothing was written to or deleted from a fallback.
- `snapshot`: I4 is checked by the caller comparing snapshots: the state after faults equals the fault-free one,
  and replaying every event changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mediacanon.checks.invariants import Violation

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.core.mediamap import MediaMap


@dataclass(frozen=True)
class Fact:
    """One thing mediacanon did, as recorded at the moment it did it."""

    action: str  # "delete", "write" (copy or put), "swap"
    bucket: str
    key: str
    at: float  # time.monotonic()
    referenced_by: tuple[Any, ...] = ()  # delete: ids of rows referencing the key just before the request
    in_primary: bool = True  # swap: the new key was in the primary bucket just before the commit
    in_cdn: bool = True  # swap: ... and in the CDN bucket


class History:
    """Facts recorded while steps run (thread-safe), and the I1/I2 violations they show."""

    def __init__(self, media_map: MediaMap) -> None:
        self.map = media_map
        self.facts: list[Fact] = []
        self._lock = threading.Lock()

    def record(self, fact: Fact) -> None:
        with self._lock:
            self.facts.append(fact)

    def delete(self, bucket: str, key: str, referenced_by: Iterable[Any]) -> None:
        self.record(Fact("delete", bucket, key, time.monotonic(), tuple(referenced_by)))

    def write(self, bucket: str, key: str) -> None:
        self.record(Fact("write", bucket, key, time.monotonic()))

    def swap(self, key: str, *, in_primary: bool, in_cdn: bool) -> None:
        self.record(Fact("swap", self.map.buckets.primary, key, time.monotonic(), in_primary=in_primary, in_cdn=in_cdn))

    def violations(self) -> list[Violation]:
        out: list[Violation] = []
        fallbacks = set(self.map.buckets.fallbacks)
        with self._lock:
            facts = list(self.facts)
        for f in facts:
            if f.bucket in fallbacks and f.action in ("delete", "write"):
                out.append(Violation("I2", "read_only_source_written", f.key, f"{f.action} issued to read-only s3://{f.bucket}"))
            elif f.action == "delete" and f.bucket == self.map.buckets.primary and f.referenced_by:
                out.append(
                    Violation(
                        "I2", "deleted_while_referenced", f.key, f"deleted while rows {list(f.referenced_by)} referenced it"
                    )
                )
            elif f.action == "swap" and not (f.in_primary and f.in_cdn):
                out.append(
                    Violation(
                        "I1",
                        "row_moved_to_missing_key",
                        f.key,
                        f"a row was moved to it while in_primary={f.in_primary} in_cdn={f.in_cdn}",
                    )
                )
        return out


@dataclass(frozen=True)
class Snapshot:
    """A comparable picture of the state (for I4: equal snapshots after faults and after a replay)."""

    primary: Mapping[str, str]  # key -> ETag, reports excluded
    cdn: Mapping[str, str]
    rows: Mapping[str, tuple[tuple[Any, str | None], ...]]  # field -> (id, value) in id order


def snapshot(media_map: MediaMap, s3: S3Adapter, db: Database) -> Snapshot:
    primary = {
        o.key: o.etag for o in s3.iter_objects(media_map.buckets.primary) if not o.key.startswith(media_map.reports_prefix)
    }
    cdn = {o.key: o.etag for o in s3.iter_objects(media_map.buckets.cdn)}
    rows = {m.name: tuple((r.id, r.value or None) for r in db.iter_rows(m)) for m in media_map.fields}
    return Snapshot(primary, cdn, rows)
