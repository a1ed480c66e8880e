"""The CSV report: one line per local file (or manifest line) and its outcome."""

from __future__ import annotations

import csv
from pathlib import Path

from mediacanon.upload.outcomes import Item

REPORT_COLUMNS = ("source", "outcome", "reason", "key", "field", "slug", "size", "content_type", "md5")


class CsvReport:
    """Per-file outcomes, one CSV line written (and flushed) as each is decided: an interrupted run keeps its lines."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(REPORT_COLUMNS)

    def write(self, item: Item) -> None:
        self._writer.writerow(item.row())
        self._file.flush()

    def close(self) -> None:
        self._file.close()
