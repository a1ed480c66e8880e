"""The cold start (issue 19): bench/cold_start.py's pure parts (the ratios, the merge into RESULTS.json, the
importtime reading), and what keeps the measured gain from regressing silently: a live handler's import leaves
psycopg_pool and the X-Ray SDK out, the Powertools parameter providers are built on boto3's default session, the
media map is not parsed again while its source is unchanged, and the layer ships byte-compiled code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.helpers import load_test_module

ROOT = Path(__file__).resolve().parents[2]
COLD = ROOT / "bench" / "cold_start.py"
LAYER = ROOT / "layers" / "core"


@pytest.fixture(scope="module")
def cold() -> ModuleType:
    return load_test_module("bench_cold_start", COLD)  # type: ignore[no-any-return]


def _samples() -> dict[str, dict[str, list[float]]]:
    return {
        "floor": {"init": [300.0, 310.0, 320.0], "first_record": [310.0, 320.0, 330.0]},
        "deployed/normalize": {"init": [450.0, 460.0, 500.0], "first_record": [500.0, 520.0, 560.0]},
        "deployed/link": {"init": [420.0, 430.0, 440.0], "first_record": [520.0, 530.0, 540.0]},
        "file/backfill": {"init": [400.0, 410.0, 420.0], "first_record": []},
    }


def test_the_ratio_is_the_worst_handlers_init_plus_first_record_over_the_floor_plus_a_request(cold: Any) -> None:
    figures = cold.summarize(_samples())
    # link's init is the shorter, its first record the longer: the headline counts both
    assert figures["worst"] == "deployed/link"
    assert figures["cold_start_ratio"] == pytest.approx(520 / 310)
    assert figures["init_worst"] == "deployed/normalize"
    assert figures["init_ratio"] == pytest.approx(450 / 300)
    assert figures["cold_start_ratio_median"] == pytest.approx(530 / 320)
    link = figures["handlers"]["deployed/link"]
    assert link["first_record_ms"] == pytest.approx(100.0)
    assert link["init"] == {"min_ms": 420.0, "median_ms": 430.0, "runs": 3}
    assert figures["met"] is False
    backfill = figures["handlers"]["file/backfill"]  # init only: reported, not in the headline
    assert "ratio" not in backfill and backfill["init_ratio"] == pytest.approx(400 / 300)


def test_a_lazy_import_moved_into_the_first_record_does_not_lower_the_ratio(cold: Any) -> None:
    before = cold.summarize(
        {"floor": {"init": [300.0], "first_record": [310.0]}, "h": {"init": [450.0], "first_record": [500.0]}}
    )
    lazy = cold.summarize(  # 60 ms of imports moved from init into the first record
        {"floor": {"init": [300.0], "first_record": [310.0]}, "h": {"init": [390.0], "first_record": [500.0]}}
    )
    assert lazy["init_ratio"] < before["init_ratio"]
    assert lazy["cold_start_ratio"] == before["cold_start_ratio"]


def test_merge_sets_the_cold_start_and_keeps_every_other_key(cold: Any) -> None:
    results = {"environment": {"date": "x"}, "scale": {"a": 1}, "live": {"p99_s_at_1": 0.4, "phases": {"r1": {}}}}
    figures = cold.summarize(_samples())
    merged = cold.merge(results, figures)
    assert merged["environment"] == {"date": "x"} and merged["scale"] == {"a": 1}
    assert merged["live"]["p99_s_at_1"] == 0.4 and merged["live"]["phases"] == {"r1": {}}
    assert merged["live"]["cold_start_ratio"] == pytest.approx(520 / 310)
    assert isinstance(merged["live"]["cold_start_ratio"], float)
    assert merged["live"]["cold_start"]["worst"] == "deployed/link"
    assert results["live"] == {"p99_s_at_1": 0.4, "phases": {"r1": {}}}  # the input is left as it was
    assert cold.merge({}, figures)["live"]["cold_start_ratio"] == pytest.approx(520 / 310)
    json.dumps(merged)  # what RESULTS.json gets


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 | encodings.idna
import time:        50 |         50 |     psycopg.errors
import time:       400 |        450 |   psycopg
import time:       200 |        200 |     botocore.client
import time:       300 |        500 |   boto3
import time:      1000 |       1950 | app
"""


def test_where_the_time_goes_reads_importtime(cold: Any) -> None:
    rows = cold.parse_importtime(IMPORTTIME)
    assert rows[1] == (2, "psycopg.errors", 50, 50) and rows[-1] == (0, "app", 1000, 1950)
    where = cold.where_time_goes(IMPORTTIME)
    assert where["total_ms"] == pytest.approx(1.95) and where["self_ms"] == pytest.approx(1.0)
    assert where["direct_ms"] == {"boto3": 0.5, "psycopg": 0.45}
    # only the root's own subtree: encodings.idna, imported before it, is not counted
    assert where["packages_self_ms"] == {"app": 1.0, "psycopg": 0.45, "boto3": 0.3, "botocore": 0.2}
    assert cold.where_time_goes(IMPORTTIME, root="missing") == {}


def test_what_an_import_spends_beyond_the_floor_counts_each_module_once(cold: Any) -> None:
    handler = {"all_packages_self_ms": {"app": 150.0, "botocore": 40.0, "psycopg": 60.0, "yaml": 12.0}}
    floor = {"all_packages_self_ms": {"floor": 90.0, "botocore": 38.0, "urllib3": 15.0}}
    assert cold.above_floor(handler, floor) == {"psycopg": 60.0, "module body": 60.0, "yaml": 12.0, "botocore": 2.0}
    assert cold.budget(cold.summarize(_samples())) == {
        "allowed_ms": pytest.approx(0.3 * 310),
        "spent_ms": pytest.approx(520 - 310),
        "first_record_ms": pytest.approx(100.0),
        "floor_request_ms": pytest.approx(10.0),
    }


def test_the_markdown_shows_the_computed_figures(cold: Any) -> None:
    figures = cold.summarize(_samples())
    figures["importtime"] = {"link": cold.where_time_goes(IMPORTTIME)}
    md = cold.markdown(figures)
    assert f"cold_start_ratio = {520 / 310:.2f}" in md
    assert "| deployed/link | 420 | 430 | 520 | 530 | 100 |" in md
    assert "file/backfill (init only)" in md and "| link | 2 | 1 | boto3 0, psycopg 0 |" in md


# -- what the gain rests on -----------------------------------------------------------------------------------------

PROBE = """
import sys
import app
from mediacanon import wiring
wiring.refresh_live_steps()  # what each invocation does first
print(" ".join(sorted(m for m in sys.argv[1:] if m in sys.modules)))
"""
# never used by a live handler with the template's defaults (Powertools' parameters: not with a media map file)
LAZY = ("psycopg_pool", "aws_xray_sdk", "aws_lambda_powertools.utilities.parameters")


@pytest.mark.parametrize("handler", ["normalize", "replicate", "link"])
def test_a_live_handlers_cold_start_leaves_the_pool_the_xray_sdk_and_the_parameters_out(handler: str, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(LAYER),  # this checkout's layer, not an installed mediacanon
        "MEDIACANON_CONFIG": str(ROOT / "sample" / "mediamap.yaml"),
        "DATABASE_URL": "postgresql://mediacanon@127.0.0.1:1/none",  # parsed at cold start, connected lazily
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "mediacanon",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *LAZY], cwd=ROOT / "functions" / handler, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at cold start: {done.stdout}"


def test_a_pool_passed_in_is_still_used_as_a_pool() -> None:
    from psycopg_pool import ConnectionPool

    from mediacanon.adapters.db import Database

    pool: ConnectionPool[Any] = ConnectionPool("postgresql://mediacanon@127.0.0.1:1/none", open=False)
    db = Database(pool)
    assert db._pool is pool and db._conninfo is None and db._conn is None
    plain = Database("postgresql://mediacanon@127.0.0.1:1/none")
    assert plain._pool is None and plain._conninfo is not None


@pytest.fixture
def no_providers() -> Iterator[dict[str, Any]]:
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    saved = dict(DEFAULT_PROVIDERS)
    DEFAULT_PROVIDERS.clear()
    yield DEFAULT_PROVIDERS
    DEFAULT_PROVIDERS.clear()
    DEFAULT_PROVIDERS.update(saved)


def test_the_parameter_providers_are_built_on_boto3s_default_session(
    no_providers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import boto3.session

    from mediacanon import wiring

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session(region_name="us-east-1")
    built: list[str] = []
    default_client = boto3.DEFAULT_SESSION.client  # type: ignore[union-attr]

    def client(service: str, *args: Any, **kwargs: Any) -> Any:
        built.append(service)
        return default_client(service, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(boto3.DEFAULT_SESSION, "client", client)

    def no_new_session(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a new boto3 session: botocore's endpoint data loaded again")

    monkeypatch.setattr(boto3.session, "Session", no_new_session)
    parameters = wiring._parameters("ssm")
    wiring._parameters("secrets")
    assert built == ["ssm", "secretsmanager"]
    assert isinstance(no_providers["ssm"], parameters.SSMProvider)
    assert isinstance(no_providers["secrets"], parameters.SecretsProvider)
    wiring._parameters("ssm")  # built once: its cache (max_age) is the one get_parameter uses
    assert built == ["ssm", "secretsmanager"]


def test_the_media_map_is_parsed_again_only_when_its_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mediacanon import wiring
    from mediacanon.core import mediamap

    config = tmp_path / "mediamap.yaml"
    text = (ROOT / "sample" / "mediamap.yaml").read_text(encoding="utf-8")
    config.write_text(text, encoding="utf-8")
    loads: list[str] = []
    real_load = mediamap.load

    def counting_load(path: str | Path) -> mediamap.MediaMap:
        loads.append(str(path))
        return real_load(path)

    monkeypatch.setattr(mediamap, "load", counting_load)
    env = {"MEDIACANON_CONFIG": str(config), "DATABASE_URL": "postgresql://mediacanon@127.0.0.1:1/none"}
    first = wiring.load_settings(env)
    again = wiring.load_settings(env)  # what refresh_live_steps does at every invocation
    assert loads == [str(config)] and again.media_map is first.media_map and again == first
    config.write_text(text.replace("schema: mediacanon", "schema: mediacanon_edited"), encoding="utf-8")
    edited = wiring.load_settings(env)
    assert len(loads) == 2 and edited.media_map.schema == "mediacanon_edited" and edited != first


def test_the_layer_ships_byte_compiled_code(tmp_path: Path) -> None:
    make = ["make", "-s", "-C", str(LAYER), "layer-code", f"ARTIFACTS_DIR={tmp_path}", f"PYTHON={sys.executable}"]
    subprocess.run(make, check=True)
    tag = sys.implementation.cache_tag
    steps = tmp_path / "python" / "mediacanon" / "__pycache__" / f"steps.{tag}.pyc"
    assert steps.is_file()
    flags = int.from_bytes(steps.read_bytes()[4:8], "little")
    assert flags == 0b01  # hash-based, unchecked: used whatever mtime the deployed source has
