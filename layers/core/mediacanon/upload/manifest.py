"""The audit manifest: a CSV saying which slugs of a staging tree may go in at all."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from mediacanon.core import naming
from mediacanon.core.mediamap import StagingManifest
from mediacanon.upload.outcomes import Item, Outcome, display_path


@dataclass(frozen=True)
class Manifest:
    """The audit verdict of every slug the manifest names (slugified, as the staging folders are read)."""

    source: str
    verdicts: dict[str, tuple[str, int]]  # slug -> (audit value, line)
    config: StagingManifest
    problems: tuple[Item, ...] = ()
    usable: bool = True  # False when the audit cannot be read at all: then no slug passes

    def admits(self, slug: str) -> tuple[bool, str]:
        if not self.usable:
            return False, f"the manifest {self.source} cannot be used (see its line in the report)"
        if slug not in self.verdicts:
            return False, f"slug not in the manifest {self.source}"
        value, line = self.verdicts[slug]
        if value.strip().lower() in {a.lower() for a in self.config.accepted}:
            return True, f"{self.config.audit_column}={value!r} (line {line})"
        return False, f"{self.config.audit_column}={value!r} on line {line} is not one of {list(self.config.accepted)}"


def parse_manifest(text: str, config: StagingManifest, source: str) -> Manifest:
    """Read an audit CSV. A missing column makes the whole manifest unusable (reported, nothing admitted);
    a bad line is reported and skipped."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in (config.slug_column, config.audit_column) if c not in columns]
    if missing:
        reason = (
            f"column(s) {missing} missing; it has {columns or 'no header'} "
            "(fix: rename the column, or set staging_manifest.slug_column / audit_column in the media map, "
            "or pass --slug-column / --audit-column)"
        )
        return Manifest(source, {}, config, (Item(source, Outcome.INVALID, reason),), usable=False)
    verdicts: dict[str, tuple[str, int]] = {}
    problems: list[Item] = []
    for raw in reader:
        row = {(k or "").strip(): (v or "") for k, v in raw.items() if isinstance(v, str)}
        line = reader.line_num
        slug_text = row.get(config.slug_column, "").strip()
        slug = naming.slugify(slug_text)
        if not slug:
            problems.append(Item(f"{source}:{line}", Outcome.INVALID, f"no usable slug in column {config.slug_column!r}"))
            continue
        value = row.get(config.audit_column, "").strip()
        if slug in verdicts and verdicts[slug][0].lower() != value.lower():
            earlier = verdicts[slug]
            problems.append(
                Item(
                    f"{source}:{line}",
                    Outcome.INVALID,
                    f"slug {slug!r} is audited twice ({earlier[0]!r} on line {earlier[1]}, {value!r} here): "
                    "the stricter verdict counts (fix: keep one line per slug)",
                    slug=slug,
                )
            )
            if value.lower() in {a.lower() for a in config.accepted}:
                continue  # keep the earlier, not-accepted verdict
        verdicts[slug] = (value, line)
    return Manifest(source, verdicts, config, tuple(problems))


def read_manifest(path: Path, config: StagingManifest) -> Manifest:
    source = display_path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # utf-8-sig: spreadsheets save CSV with a BOM
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc} (fix: pass the audit CSV's path)"
        return Manifest(source, {}, config, (Item(source, Outcome.INVALID, reason),), usable=False)
    except UnicodeDecodeError as exc:
        reason = f"is not UTF-8 text ({exc.reason} at byte {exc.start}) (fix: save it as UTF-8 CSV)"
        return Manifest(source, {}, config, (Item(source, Outcome.INVALID, reason),), usable=False)
    return parse_manifest(text, config, source)
