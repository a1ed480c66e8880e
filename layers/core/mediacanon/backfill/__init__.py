"""The backfill's batch workers: the same steps as the live path, run synchronously over what already exists.

Each phase function takes a batch, returns counts and per-object outcomes, and is idempotent: a second run
of a finished backfill counts everything as skipped, and a run killed midway and started again converges.
A retryable error fails the whole batch (Step Functions retries it); a permanent one is counted as failed
for that object and the batch goes on.

The modules, each importing only those above it: results (BatchResult, the report's counts, the phases'
constants), listing (which keys a bucket holds: `present`, `Listed`), objects (the per-object objects phase),
listed (the listed-batch objects phase), rows, mirror (the CDN prune), report (parts and the merged report),
tasks (the state machine's tasks: `run_task`, `TASKS`, `prepare`). This package re-exports what callers use; a
test that patches a name patches it in the module that looks it up (e.g. `mediacanon.backfill.listed`).
"""

from mediacanon.backfill.listed import COPY_OBJECT_LIMIT, ORPHAN_KEPT, _link_and_retire, process_listed
from mediacanon.backfill.listing import COPY_THREADS, LIST_PAGE, LIST_PAYS_OFF, Listed, listed_items, present
from mediacanon.backfill.mirror import prune_mirror
from mediacanon.backfill.objects import process_objects
from mediacanon.backfill.report import (
    PART_READERS,
    Report,
    _child_error,
    failed_children,
    parts_prefix,
    read_parts,
    results_prefix,
    write_part,
    write_streamed_report,
)
from mediacanon.backfill.results import (
    CSV_FIELDS,
    DEFAULT_MAX_DELETES,
    FALLBACK_SOURCE,
    PHASES,
    REPORT_COUNTS,
    ROWS_PER_RANGE,
    BatchResult,
)
from mediacanon.backfill.rows import process_rows, row_ranges, rows_manifest_key
from mediacanon.backfill.tasks import BATCH_TASKS, TASKS, Task, prefixes_to_scan, prepare, run_task
from mediacanon.core.errors import PermanentError, RetryableError

__all__ = [
    "BATCH_TASKS",
    "COPY_OBJECT_LIMIT",
    "COPY_THREADS",
    "CSV_FIELDS",
    "DEFAULT_MAX_DELETES",
    "FALLBACK_SOURCE",
    "LIST_PAGE",
    "LIST_PAYS_OFF",
    "ORPHAN_KEPT",
    "PART_READERS",
    "PHASES",
    "REPORT_COUNTS",
    "ROWS_PER_RANGE",
    "TASKS",
    "BatchResult",
    "Listed",
    "PermanentError",
    "Report",
    "RetryableError",
    "Task",
    "_child_error",
    "_link_and_retire",
    "failed_children",
    "listed_items",
    "parts_prefix",
    "prefixes_to_scan",
    "prepare",
    "present",
    "process_listed",
    "process_objects",
    "process_rows",
    "prune_mirror",
    "read_parts",
    "results_prefix",
    "row_ranges",
    "rows_manifest_key",
    "run_task",
    "write_part",
    "write_streamed_report",
]
