"""The three-way check behind `mediacanon verify`: primary bucket x CDN bucket x database (and the ledger).

Its core is `mediacanon.checks.invariants.check_invariants`; this module keeps the command's shape. Broken promises
(non-zero exit):
- I1: a row mediacanon changed (it is in the ledger) points at a key missing from the primary or the CDN bucket;
- I2: a row points at a key mediacanon retired, and the key is gone;
- I3: a CDN key that is not a canonical primary key, or a CDN object whose bytes differ from its primary object;
- I5 is never broken from the state alone (the test suites prove it with their baselines: every original's bytes
  kept): a retired source whose canonical copy is gone is reported (`retired_copy_gone`), since it may have been
  deleted on purpose since. `verify --json` keeps its I5 section, always ok, for its readers (the CLI's text output).
Reported, not broken, in the plan's words and by the plan's own definitions (`mediacanon.plan.plan_row`,
`mediacanon.plan.orphan_reason`), so `plan`, the backfill's report and `verify` give the same numbers:
- missing: a row mediacanon never moved points at a key no bucket holds, and nothing can bring the file back
  (a 404 from before mediacanon; a row mediacanon moved to a 404 is I1, broken, never "missing");
- repairable: such a row whose file the backfill can bring back (its canonical key exists, or a read-only
  fallback holds it): the plan's "repair";
- served_from_fallback (with `buckets.fallbacks_served` only): a row whose key the primary lacks and the read-only
  fallback holds; the CDN fails over to that bucket, so the row resolves (a QA stack serving a production dump's
  files, docs/qa.md): neither broken nor missing nor repairable;
- pending rename, unmirrored: work the live path or the backfill has yet to do;
- orphans: objects no row owns (I5: reported, deleted only on explicit request); refused: keys never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mediacanon.checks.invariants import InvariantReport, Violation, check_invariants
from mediacanon.core.mediamap import MediaMap

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter


@dataclass
class Verification:
    broken_i1: list[dict[str, Any]] = field(default_factory=list)  # changed rows pointing at a 404
    broken_i3_extra: list[str] = field(default_factory=list)  # CDN keys that are not canonical primary keys
    broken_i3_differs: list[str] = field(default_factory=list)  # CDN bytes differ from primary
    broken_i2: list[dict[str, Any]] = field(default_factory=list)  # rows pointing at a key mediacanon retired
    # what is reported, not broken (missing rows, pending renames, orphans...), and the structured violations
    invariants: InvariantReport = field(default_factory=InvariantReport)
    fallbacks_served: bool = False  # the media map's buckets.fallbacks_served: the CDN fails over to the fallback

    @property
    def counts(self) -> dict[str, int]:
        return self.invariants.counts

    @property
    def reported(self) -> dict[str, int]:
        """How many of each reported-not-broken kind, under the words the plan and the backfill's report use."""
        checked = self.invariants
        served = {"served_from_fallback": len(checked.served_from_fallback)} if self.fallbacks_served else {}
        return {
            "missing": len(checked.missing),
            "repairable": len(checked.repairable),
            **served,
            "orphan": len(checked.orphans),
            "refused": len(checked.refused),
            "pending_rename": len(checked.pending),
            "unmirrored": len(checked.unmirrored),
        }

    @property
    def ok(self) -> bool:
        return not (self.broken_i1 or self.broken_i3_extra or self.broken_i3_differs or self.broken_i2)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "i1_never_a_404": {"ok": not self.broken_i1, "broken": self.broken_i1},
            "i2_delete_last": {"ok": not self.broken_i2, "broken": self.broken_i2},
            "i3_exact_mirror": {
                "ok": not (self.broken_i3_extra or self.broken_i3_differs),
                "not_canonical_primary_keys": self.broken_i3_extra,
                "bytes_differ": self.broken_i3_differs,
            },
            # never broken from the state alone (see the module docstring): what it can tell is report.retired_copy_gone
            "i5_nothing_lost": {"ok": True, "broken": []},
            "fallbacks_served": self.fallbacks_served,
            "report": {
                "missing": self.invariants.missing,
                "repairable": self.invariants.repairable,
                **({"served_from_fallback": self.invariants.served_from_fallback} if self.fallbacks_served else {}),
                "unmirrored": self.invariants.unmirrored,
                "pending_rename": self.invariants.pending,
                "orphans": self.invariants.orphans,
                "refused": self.invariants.refused,
                "retired_copy_gone": self.invariants.retired_copy_gone,
            },
            "counts": self.counts,
            "reported": self.reported,
        }


def verify(media_map: MediaMap, s3: S3Adapter, db: Database, ledger: Ledger) -> Verification:
    checked = check_invariants(media_map, s3, db, ledger)
    return Verification(
        broken_i1=[v.data for v in checked.broken("I1")],
        broken_i3_extra=[v.key for v in checked.broken("I3") if v.kind in ("cdn_key_not_in_primary", "cdn_key_not_canonical")],
        broken_i3_differs=[v.key for v in checked.broken("I3") if v.kind == "cdn_bytes_differ"],
        broken_i2=[_entry(v) for v in checked.broken("I2")],
        invariants=checked,
        fallbacks_served=media_map.buckets.fallbacks_served,
    )


def _entry(violation: Violation) -> dict[str, Any]:
    return {"kind": violation.kind, "key": violation.key, "detail": violation.detail, **violation.data}
