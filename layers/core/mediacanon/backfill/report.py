"""The report: each worker's outcomes as a part in S3, the map runs' failed children, merged into report.json and
report.csv a part at a time."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mediacanon.backfill.results import CSV_FIELDS, REPORT_COUNTS, BatchResult
from mediacanon.steps import Steps

if TYPE_CHECKING:
    from mediacanon.core.mediamap import MediaMap


@dataclass(frozen=True)
class Report:
    counts: dict[str, int]
    dry_run: bool

    @property
    def line(self) -> str:
        shown = ("migrated", "linked", "missing", "skipped", "failed")
        extra = [k for k in REPORT_COUNTS if k not in shown and self.counts.get(k)]
        head = "DRY RUN" if self.dry_run else "DONE"
        return f"{head} | " + " ".join(f"{k}={self.counts.get(k, 0)}" for k in (*shown, *extra))


def write_streamed_report(steps: Steps, execution: str, *, dry_run: bool) -> tuple[Report, tuple[str, str]]:
    """Merge the parts into report.json and report.csv a part at a time: the items go through temporary files, so
    memory holds one part, not every outcome of the backfill. Returns the report (counts only) and both keys."""
    primary = steps.map.buckets.primary
    base = f"{steps.map.reports_prefix}{execution}/report"
    counts: Counter[str] = Counter()
    with tempfile.TemporaryFile() as items, tempfile.TemporaryFile() as table, tempfile.TemporaryFile() as document:
        text = io.TextIOWrapper(table, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=CSV_FIELDS)
        writer.writeheader()
        separator = b""
        for part in (*read_parts(steps, execution), *failed_children(steps, execution)):
            counts.update(part.get("counts", {}))
            for item in part.get("items", []):
                items.write(separator + json.dumps(item, default=str).encode())
                separator = b", "
                writer.writerow(item)
        text.flush()
        text.detach()  # the CSV stays open for the upload below
        report = Report({k: counts.get(k, 0) for k in REPORT_COUNTS}, dry_run)
        # one JSON document {line, dry_run, counts, items}, written in pieces
        head = json.dumps({"line": report.line, "dry_run": dry_run, "counts": report.counts})
        document.write(head[:-1].encode() + b', "items": [')
        items.seek(0)
        shutil.copyfileobj(items, document)
        document.write(b"]}")
        document.seek(0)
        steps.s3.put_file(primary, base + ".json", document, "application/json")
        table.seek(0)
        steps.s3.put_file(primary, base + ".csv", table, "text/csv")
    return report, (base + ".json", base + ".csv")


def parts_prefix(media_map: MediaMap, execution: str) -> str:
    return f"{media_map.reports_prefix}{execution}/parts/"


def results_prefix(media_map: MediaMap, execution: str) -> str:
    """Where the map runs' ResultWriter puts each run's manifest.json and result files (one folder per map run)."""
    return f"{media_map.reports_prefix}{execution}/results"


def write_part(steps: Steps, execution: str, name: str, result: BatchResult) -> str:
    """One worker's outcomes as a JSON part of the execution's report. Named by what the worker was given, so
    a retried batch overwrites its own part instead of being counted twice."""
    key = f"{parts_prefix(steps.map, execution)}{name}.json"
    steps.s3.put_bytes(steps.map.buckets.primary, key, json.dumps(result.to_json(), default=str).encode(), "application/json")
    return key


PART_READERS = 16  # parts read side by side: at 10 M objects the report reads 40,000 of them within one Lambda


def read_parts(steps: Steps, execution: str) -> Iterator[dict[str, Any]]:
    """The execution's parts in key order, read ahead a few at a time (memory holds those, not all of them)."""
    primary = steps.map.buckets.primary
    with ThreadPoolExecutor(PART_READERS) as pool:
        ahead: deque[Future[bytes]] = deque()
        for obj in steps.s3.iter_objects(primary, parts_prefix(steps.map, execution)):
            ahead.append(pool.submit(steps.s3.get_bytes, primary, obj.key))
            if len(ahead) >= 2 * PART_READERS:
                yield json.loads(ahead.popleft().result())
        while ahead:
            yield json.loads(ahead.popleft().result())


def failed_children(steps: Steps, execution: str) -> Iterator[dict[str, Any]]:
    """The map runs' failed child executions, as parts: a batch that failed for good (within the map's tolerated
    failures, or before a redrive) wrote no part of its own, so without this its objects would be missing from the
    report. Read from each map run's ResultWriter manifest and its FAILED result files, in the shapes AWS documents
    (Step Functions developer guide, "ResultWriter (Map)": manifest.json lists ResultFiles by status; each result
    file is a JSON array of child executions with their Input, Error and Cause)."""
    primary = steps.map.buckets.primary
    for obj in steps.s3.iter_objects(primary, results_prefix(steps.map, execution) + "/"):
        if not obj.key.endswith("/manifest.json"):
            continue
        manifest = json.loads(steps.s3.get_bytes(primary, obj.key))
        for result_file in manifest.get("ResultFiles", {}).get("FAILED", []):
            for child in json.loads(steps.s3.get_bytes(primary, result_file["Key"])):
                yield _failed_child_part(child)


def _failed_child_part(child: dict[str, Any]) -> dict[str, Any]:
    """One failed child execution as a part: each object of its batch (or its row range) counted as failed, with
    the error as Lambda reported it (its type and message, not a JSON-escaped traceback)."""
    error = _child_error(child)
    given = json.loads(child.get("Input") or "{}")
    result = BatchResult()
    if "Items" in given:
        for item in given["Items"]:
            result.add("failed", str(item.get("Key", "")), f"batch failed: {error}")
    elif "range" in given:
        span = given["range"]
        where = f"{span.get('field')} ids from {span.get('start')!r} to {span.get('end')!r}"
        result.add("failed", "", f"rows {where} not checked: {error}", phase="rows")
    else:
        result.add("failed", "", f"{child.get('ExecutionArn', 'a child execution')} failed: {error}")
    return result.to_json()


def _child_error(child: dict[str, Any]) -> str:
    error, cause = str(child.get("Error") or "an error"), child.get("Cause") or ""
    try:
        lambda_error = json.loads(cause)  # a Lambda task's cause is its error as JSON: errorType, errorMessage, ...
    except (TypeError, ValueError):
        lambda_error = None
    if isinstance(lambda_error, dict) and "errorMessage" in lambda_error:
        return f"{lambda_error.get('errorType', error)}: {lambda_error['errorMessage']}"
    return f"{error}: {cause}" if cause else error
