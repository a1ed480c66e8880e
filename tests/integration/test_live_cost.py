"""What a listed backfill batch's own events cost the live path, counted at the wire (bench/live_cost.py): the real
state machine backfills a site older than mediacanon's events while nothing drains the queues, then the real
handlers drain them through an S3 request counter and a PostgreSQL round-trip counter."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = 12


def _live_cost() -> Any:
    spec = importlib.util.spec_from_file_location("live_cost", ROOT / "bench" / "live_cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["live_cost"] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured(moto_endpoint: str, database_url: str, aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _live_cost().measure(
        OBJECTS, moto_url=moto_endpoint, database_url=database_url, workdir=tmp_path_factory.mktemp("cost")
    )


def test_every_backfilled_object_reaches_the_live_path_as_four_messages(measured: dict[str, Any]) -> None:
    assert measured["migrated"] == OBJECTS, measured["backfill"]
    assert measured["delete_markers"] == OBJECTS  # one delete marker per retired source, each an Object Deleted event
    kinds = measured["kinds"]
    # the canonical copy (normalize + replicate), the CDN copy (link), the retired source (replicate)
    for kind in (
        "normalize: canonical copy",
        "replicate: canonical copy",
        "link: CDN copy",
        "replicate: retired source (Object Deleted)",
    ):
        assert kinds[kind]["messages"] == OBJECTS, (kind, kinds)
    assert measured["drain"]["records"] == measured["total"]["messages"] == sum(measured["queued"].values())
    assert measured["drain"]["failed_records"] == 0 and measured["verified"]


def test_a_listed_batchs_events_cost_at_most_one_s3_request_and_no_database_call_each(measured: dict[str, Any]) -> None:
    for kind, tally in measured["kinds"].items():
        assert tally["max_s3_per_message"] <= 1, (kind, tally)
        assert tally["max_db_per_message"] == 0, (kind, tally)
        assert set(tally["s3"]) <= {"HeadObject"}, (kind, tally)  # reads only: nothing copied, deleted or listed
    assert measured["drain"]["copies"] == {}  # no event of the backfill's made the live path copy anything
    assert measured["total"]["db_round_trips"] == 0
