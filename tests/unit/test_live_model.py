"""bench/live_model.py, the live path on AWS as a model: the batching window's latency, queueing above what the
concurrency can serve, the choice under the stated objective, the AWS documents behind its constants, and that
template.yaml carries the choice bench/RESULTS.json records."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.helpers import load_test_module

from mediacanon.local.topology import load_template, load_topology

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "bench" / "live_model.py"
RESULTS = ROOT / "bench" / "RESULTS.json"
FUNCTIONS = {"normalize": "NormalizeFunction", "replicate": "ReplicateFunction", "link": "LinkFunction"}
QUEUES = {"normalize": "NormalizeQueue", "replicate": "ReplicateQueue", "link": "LinkQueue"}


@pytest.fixture(scope="module")
def m() -> ModuleType:
    return load_test_module("bench_live_model", MODEL)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def inputs(m: Any) -> Any:
    """Fixed inputs (not RESULTS.json): 0.2 s p50 / 0.3 s p99 a record on every queue."""
    return m.Inputs(
        service={q: m.ServiceTime(0.2, 0.3) for q in FUNCTIONS},
        service_source="test",
        memory_mb=dict.fromkeys(FUNCTIONS, 512),
        timeout_s={"normalize": 300, "replicate": 300, "link": 60},
        record_bytes=1300,
        records_per_upload={"normalize": 2, "replicate": 3, "link": 1},
    )


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    live = json.loads(RESULTS.read_text())["live"]
    assert "model" in live, "run bench/live_model.py: RESULTS.json has no live.model"
    recorded: dict[str, Any] = live["model"]
    return recorded


def test_the_window_adds_latency_monotonically(m: Any, inputs: Any) -> None:
    one = m.Scenario("1/s", 1.0, 60)
    rows = [m.evaluate(m.Config.uniform(10, w, 5), inputs, one, samples=120) for w in (0, 1, 2, 5, 10, 20)]
    p50s, p99s = [r["p50_s"] for r in rows], [r["p99_s"] for r in rows]
    assert p50s == sorted(p50s) and p99s == sorted(p99s), (p50s, p99s)
    # no window: three deliveries and three services; a 5 s window that cannot fill adds at least 5 s on some hop
    assert rows[0]["p99_s"] < 3 * inputs.delivery_s + 3 * 0.3 + 0.5
    assert rows[3]["p99_s"] >= rows[0]["p99_s"] + 5


def test_the_window_saves_invocations_and_cost(m: Any, inputs: Any) -> None:
    one = m.Scenario("1/s", 1.0, 60)
    none, five = (m.evaluate(m.Config.uniform(10, w, 5), inputs, one, samples=120) for w in (0, 5))
    assert none["invocations_per_upload"] == pytest.approx(6.0)  # every record its own invocation at 1/s
    assert five["invocations_per_upload"] < none["invocations_per_upload"]
    assert five["usd_per_million_total"] < none["usd_per_million_total"]


def test_a_rate_above_concurrency_times_throughput_queues(m: Any, inputs: Any) -> None:
    config = m.Config.uniform(10, 0, 5)
    # normalize: 2 records an upload x 0.2 s / 5 slots -> 12.5 uploads/s saturate it
    assert m.utilization(config, inputs, 20.0)["normalize"] > 1 > m.utilization(config, inputs, 5.0)["normalize"]

    def p99(rate: float, uploads: int) -> float:
        return float(m.evaluate(config, inputs, m.Scenario("s", rate, uploads), samples=uploads)["p99_s"])

    assert p99(20.0, 400) > p99(20.0, 200) + 5  # the backlog grows with the phase: queueing
    assert p99(5.0, 400) == pytest.approx(p99(5.0, 200), abs=0.5)  # below capacity it does not
    more = m.Config.uniform(10, 0, 20)  # the same rate with 20 slots keeps up
    assert m.utilization(more, inputs, 20.0)["normalize"] < 1
    assert m.evaluate(more, inputs, m.Scenario("s", 20.0, 400), samples=400)["p99_s"] < p99(20.0, 400) / 2


def test_the_payload_limit_caps_a_batch(m: Any, inputs: Any) -> None:
    big = m.Inputs(**{**inputs.__dict__, "record_bytes": 3 * 1024 * 1024})  # two records make 6 MB
    burst = m.evaluate(m.Config.uniform(10, 5, 5), big, m.Scenario("burst", None, 100), samples=100)
    assert burst["records_per_invocation"] <= 2


def test_invalid_settings_are_refused(m: Any) -> None:
    for bad in (m.Esm(11, 0), m.Esm(0, 0), m.Esm(10, 301), m.Esm(10_001, 1)):
        with pytest.raises(ValueError):
            bad.validate()
    with pytest.raises(ValueError):
        m.Config.uniform(10, 0, 1).validate()  # MaximumConcurrency's minimum is 2
    assert all(e.batch_size <= 10 or e.window_s >= 1 for e in m.grid())


def test_choose_is_the_argmin_under_the_objective(m: Any) -> None:
    def row(label: str, objective: float, cost: float) -> dict[str, Any]:
        return {"label": label, "objective_s": objective, "cost_usd_per_million": cost}

    rows = [row("fast-dear", 3.0, 30.0), row("fast", 3.1, 18.0), row("faster", 3.0, 19.0), row("slow-cheap", 20.0, 15.0)]
    assert m.choose(rows, 20.0, tolerance=0.0)["label"] == "faster"  # the least p99 within the bound
    assert m.choose(rows, 20.0, tolerance=0.05)["label"] == "fast"  # within 5 % of the least: the cheaper
    assert m.choose(rows, 16.0, tolerance=0.05)["label"] == "slow-cheap"
    with pytest.raises(ValueError):
        m.choose(rows, 1.0)
    # a tie to the cent, p99s within the tolerance: the larger batches (fewer invocations once a queue backs up)
    small, large = (
        {**row(f"b{b}", p99, 16.691), "config": m.Config.uniform(b, 0, 5).to_json()} for b, p99 in ((1, 3.0), (10, 3.1))
    )
    assert m.choose([small, large], 20.0, tolerance=0.05)["label"] == "b10"
    assert m.choose([small, large], 20.0, tolerance=0.0)["label"] == "b1"  # outside the tolerance the faster wins


def test_the_recorded_choice_is_the_argmin_of_what_was_evaluated(m: Any, model: dict[str, Any]) -> None:
    rows, bound, tolerance = model["rows"], model["bound_usd_per_million"], model["latency_tolerance"]
    assert m.choose(rows, bound, tolerance)["config"] == model["choice"]["config"]
    within = [r for r in rows if r["cost_usd_per_million"] <= bound]
    best = min(r["objective_s"] for r in within)
    near = [r for r in within if r["objective_s"] <= best * (1 + tolerance)]
    assert model["choice"]["objective_s"] <= best * (1 + tolerance)
    assert round(model["choice"]["cost_usd_per_million"], 2) == round(min(r["cost_usd_per_million"] for r in near), 2)
    cheapest_uniform = min(r["cost_usd_per_million"] for r in model["uniform"])
    assert bound == pytest.approx(cheapest_uniform * model["cost_bound_ratio"])


def _url_token(url: str) -> str:
    """What a constant's comment must name of its document: the page file, or host/path for a pricing page."""
    path = url.split("#", 1)[0].removeprefix("https://").rstrip("/")
    last = path.rsplit("/", 1)[-1]
    return last if last.endswith(".html") else path


def test_the_constants_name_their_aws_documents(m: Any) -> None:
    lines = MODEL.read_text().splitlines()
    for name, c in m.CONSTANTS.items():
        doc = m.AWS_DOCS[c.doc]
        assert doc.title and doc.quote, name
        assert doc.url.startswith(("https://docs.aws.amazon.com/", "https://aws.amazon.com/")), (name, doc.url)
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(f'"{name}": Constant('))
        comment = []
        for line in reversed(lines[:at]):
            if not line.strip().startswith("#"):
                break
            comment.append(line)
        assert _url_token(doc.url) in " ".join(comment), f"{name}: its comment does not cite {doc.url}"
    # and what the model reports carries them
    assert all(k in m.CONSTANTS for k in ("ESM_INITIAL_POLLERS", "LONG_POLL_WAIT_S", "INVOKE_PAYLOAD_LIMIT_BYTES"))


def test_records_per_upload_come_from_the_measured_outcomes(m: Any) -> None:
    outcomes = {"link:linked": 10, "normalize:normalized": 10, "normalize:skipped": 10, "replicate:mirrored": 10,
                "replicate:skipped": 20}  # fmt: skip
    assert m.records_per_upload({"outcomes": outcomes}) == {"normalize": 2, "replicate": 3, "link": 1}
    with pytest.raises(ValueError):
        m.records_per_upload({"outcomes": {**outcomes, "replicate:skipped": 10}})
    assert m.service_times({})[1] == "fallback"


def test_template_batching_is_the_models_choice(model: dict[str, Any]) -> None:
    parameters = {"PrimaryBucketName": "archive-media", "CdnBucketName": "archive-cdn", "FallbackBucketNames": "",
                  "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf"}  # fmt: skip
    template = ROOT / "template.yaml"
    topology = load_topology(template, parameters)
    raw = load_template(template)
    for step, logical_id in FUNCTIONS.items():
        fn = topology.function(logical_id)
        chosen = model["choice"]["config"][step]
        assert (fn.batch_size, fn.maximum_batching_window) == (chosen["batch_size"], chosen["window_s"]), step
        visibility = int(raw["Resources"][QUEUES[step]]["Properties"]["VisibilityTimeout"])
        assert visibility == model["visibility_timeout_s"][step] == 6 * fn.timeout + chosen["window_s"], step


def test_more_concurrency_keeps_up_where_five_does_not(m: Any, inputs: Any) -> None:
    # 20/s x 2 normalize records x 0.2 s = 8 busy slots: MaximumConcurrency 5 queues without bound, 50 does not
    steady = [m.Scenario("1/s", 1.0, 30), m.Scenario("20/s", 20.0, 200)]
    keep = m.keep_up_by_concurrency(m.Config.uniform(10, 0, 5), inputs, steady, samples=120)
    assert set(keep) == {"5", "10", "20", "50"}
    assert keep["5"]["ratio"] > m.KEEP_UP_TARGET
    assert keep["50"]["ratio"] <= m.KEEP_UP_TARGET, keep["50"]
    assert keep["50"]["db_connection_bound"] == 150


def test_the_recorded_keep_up_ratio_is_the_templates_concurrency(model: dict[str, Any]) -> None:
    concurrency = str(model["inputs"]["maximum_concurrency"])
    assert model["keep_up_ratio"] == model["keep_up_by_concurrency"][concurrency]["ratio"]
