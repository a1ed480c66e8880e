"""The live path under load: Django-style uploads at steady rates and in a burst, consumed by the real handlers.

    .venv/bin/python bench/live.py                                   # 30 @ 1/s, 60 @ 5/s, 200 @ 20/s, a burst of 1,000
    .venv/bin/python bench/live.py --rates 1:10 20:40 --burst 100    # a short run
    .venv/bin/python bench/live.py --render                          # bench/results/live.md and plots from RESULTS.json

One local stack (moto server + embedded PostgreSQL, the topology of template.yaml provisioned on it; the same
`mediacanon.local.embedded` servers bench.py and live_cost.py use). A table `archive_publicationsource` holds one
row per upload, its `icon` naming the key Django stores (`icons/<slug>_icon_v2_final.png`). Then, per phase:

- an uploader subprocess (this file with `--upload`) saves the files through django-storages' `S3Storage`
  (`storage.save(name, ContentFile(...))`, Django configured in that process the way a site's settings do) at a
  steady rate, or all at once from 16 threads for the burst, printing each save's wall-clock time as it returns;
- this process runs the live path meanwhile: `mediacanon.local.localrun.run` (the real handlers, in-process, warm
  across calls) in one-second slices until every upload of the phase is linked and the queues are empty. Each
  record's result is observed (`run(observe=...)`) with its wall-clock time: that is the per-hop split.

Latency of an upload = from `storage.save()` returning (the PUT acknowledged) until the link step reported LINKED
for its canonical key (the link runs on the CDN bucket's event, so by then the canonical key is in both buckets and
the row names it). Afterwards each upload is checked without timing: row, primary and CDN hold the canonical key.

Counted at the wire (bench/counting.py): the handlers' S3 requests through an HTTP proxy in front of the moto server
and their PostgreSQL round trips through a TCP proxy (a round trip = the server answering after the client sent;
connection setup included). The uploader's own PUT and the local runner's SQS calls bypass both. Sampled every
0.5 s: ApproximateNumberOfMessages(+NotVisible) of the three queues, and the connections to the database in
pg_stat_activity (the sampler's own excluded).

The local runner is not Lambda's event-source mapping: it polls the queues in turn, one batch at a time
(WaitTimeSeconds=0, up to BatchSize records, no MaximumBatchingWindowInSeconds wait, no concurrency), so latency
here is queueing behind one consumer, not AWS's batching window and scaling.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TEMPLATE = REPO / "template.yaml"
RESULTS_JSON, RESULTS_MD = BENCH / "RESULTS.json", BENCH / "RESULTS.md"
OUT = BENCH / "results"
LIVE_MD = OUT / "live.md"
REGION = "us-east-1"
TABLE = "archive_publicationsource"
QUEUES = {"normalize": "NormalizeQueue", "replicate": "ReplicateQueue", "link": "LinkQueue"}
HOPS = ("normalize", "replicate", "link")
DEFAULT_RATES = ("1:30", "5:60", "20:200")
SAMPLE_EVERY = 0.5

sys.path.insert(0, str(BENCH))


# -- pure computations (tests/unit/test_live_bench.py) ----------------------------------------------------------------


@dataclass
class Sample:
    """One upload: when its PUT returned and when each hop's handler reported it (wall-clock seconds)."""

    key: str
    canonical: str
    put_at: float | None = None
    hops: dict[str, float] = field(default_factory=dict)  # normalize / replicate / link -> first result's time

    @property
    def latency(self) -> float | None:
        if self.put_at is None or "link" not in self.hops:
            return None
        return self.hops["link"] - self.put_at


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99),
            "max": max(values) if values else None}  # fmt: skip


def hop_split(samples: Sequence[Sample]) -> dict[str, dict[str, float | None]]:
    """Per hop, the time from the previous point (the PUT, then the previous hop) to that hop's result."""
    split: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for s in samples:
        prev = s.put_at
        for hop in HOPS:
            at = s.hops.get(hop)
            if prev is None or at is None:
                break
            split[hop].append(at - prev)
            prev = at
    return {hop: summary(v) for hop, v in split.items()}


def keep_up_ratio(p99_fast: float | None, p99_slow: float | None) -> float | None:
    """p99 at the highest rate over p99 at the lowest: 1.0 means the live path keeps up."""
    if p99_fast is None or not p99_slow:
        return None
    return p99_fast / p99_slow


def phase_figures(samples: Sequence[Sample]) -> dict[str, Any]:
    latencies = [s.latency for s in samples if s.latency is not None]
    return {
        "uploads": len(samples),
        "linked": len(latencies),
        "latency_s": summary(latencies),
        "hops_s": hop_split(samples),
    }


def targets(live: dict[str, Any]) -> list[dict[str, Any]]:
    """(target, measured, met) computed from the recorded figures."""

    def row(name: str, measured: Any, met: bool | None) -> dict[str, Any]:
        return {"target": name, "measured": measured, "met": met}

    ratio = live.get("keep_up_ratio")
    bound = live.get("db_connection_bound")
    return [
        row("p99 at 20/s <= 1.5 x p99 at 1/s", ratio, None if ratio is None else ratio <= 1.5),
        row("S3 writes per upload <= 3", live["s3_writes_per_upload"], live["s3_writes_per_upload"] <= 3),
        row("S3 reads per upload <= 2", live["s3_reads_per_upload"], live["s3_reads_per_upload"] <= 2),
        row("DB round trips per upload <= 4", live["db_round_trips_per_upload"], live["db_round_trips_per_upload"] <= 4),
        row("burst: failed = 0", live["burst_failed"], live["burst_failed"] == 0),
        row("burst: DLQ = 0", live["burst_dlq"], live["burst_dlq"] == 0),
        row(f"max DB connections <= {bound} (MaximumConcurrency x queues)", live["max_db_connections"],
            None if bound is None else live["max_db_connections"] <= bound),
        *others(live),
    ]  # fmt: skip


def others(live: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets the other benchmarks' figures answer, once they are in "live": the keep-up ratio as modelled on
    AWS (bench/live_model.py) and the cold start (bench/cold_start.py)."""
    out: list[dict[str, Any]] = []
    model = live.get("model") or {}
    if model.get("keep_up_ratio") is not None:
        c, ratio = model["inputs"]["maximum_concurrency"], model["keep_up_ratio"]
        out.append({"target": f"p99 at 20/s <= 1.5 x p99 at 1/s, modelled on AWS (MaximumConcurrency {c})",
                    "measured": ratio, "met": ratio <= 1.5})  # fmt: skip
    if live.get("cold_start_ratio") is not None:
        out.append({"target": "cold start (init + first record) <= 1.3 x the floor (bench/cold_start.py)",
                    "measured": live["cold_start_ratio"], "met": live["cold_start_ratio"] <= 1.3})  # fmt: skip
    return out


def maximum_concurrency(template_text: str) -> int | None:
    """The template's MaximumConcurrency parameter default."""
    m = re.search(r"^  MaximumConcurrency:\n(?:    .*\n)*?    Default: (\d+)", template_text, re.M)
    return int(m.group(1)) if m else None


# -- the uploader (a subprocess: what a Django site does) -------------------------------------------------------------


# what other benchmarks write into "live" (bench/live_model.py, bench/cold_start.py): kept when this one rewrites it
OTHERS_KEYS = ("model", "cold_start", "cold_start_ratio")


def merged(previous: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """This run's "live" figures, with the other benchmarks' keys (OTHERS_KEYS) kept from the previous results."""
    return {**{k: previous[k] for k in OTHERS_KEYS if k in previous}, **live}


def slug(phase: str, i: int) -> str:
    return f"{phase}-{i:05d}"


def messy_key(phase: str, i: int) -> str:
    return f"icons/{slug(phase, i)}_icon_v2_final.png"


def canonical_key(phase: str, i: int) -> str:
    return f"icons/{slug(phase, i)}.png"


def body(phase: str, i: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + slug(phase, i).encode() * (4 + i % 7)


def upload_main(opts: argparse.Namespace) -> None:
    import django
    from django.conf import settings

    settings.configure(
        STORAGES={
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": opts.bucket,
                    "endpoint_url": opts.endpoint,
                    "region_name": REGION,
                    "access_key": "testing",
                    "secret_key": "testing",
                    "file_overwrite": True,
                },
            },
            "staticfiles": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        },
        USE_TZ=True,
    )
    django.setup()
    from concurrent.futures import ThreadPoolExecutor

    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    storage = storages["default"]
    lock = threading.Lock()

    def save(i: int) -> None:
        try:
            name = storage.save(messy_key(opts.phase, i), ContentFile(body(opts.phase, i)))
            line = {"i": i, "name": name, "at": time.time()}
        except Exception as exc:
            line = {"i": i, "error": repr(exc), "at": time.time()}
        with lock:
            print(json.dumps(line), flush=True)

    storage.exists("warm-up")  # the client and its connection before the clock starts
    print(json.dumps({"ready": time.time()}), flush=True)
    if opts.rate <= 0:  # the burst: everything at once
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(save, range(opts.count)))
        return
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        for i in range(opts.count):
            delay = start + i / opts.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(save, i)


# -- the harness ------------------------------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Queue depths and the database's connections every SAMPLE_EVERY seconds."""

    def __init__(self, stack: Any, moto_url: str, conninfo: str, dbname: str) -> None:
        super().__init__(daemon=True)
        import boto3
        import psycopg

        self.sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
        self.urls = {name: stack.queue_urls[q] for name, q in QUEUES.items()}
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.dbname = dbname
        self.phase = ""
        self.samples: list[dict[str, Any]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            depths = {}
            for name, url in self.urls.items():
                a = self.sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
                )["Attributes"]
                depths[name] = int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])
            row = self.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.dbname,)
            ).fetchone()
            self.samples.append({"t": time.time(), "phase": self.phase, "depths": depths, "db_connections": row[0] if row else 0})
            self.stopped.wait(SAMPLE_EVERY)
        self.conn.close()


class Observer:
    """Each record's result with its time, matched to the upload it belongs to."""

    def __init__(self) -> None:
        self.by_key: dict[str, Sample] = {}
        self.outcomes: Counter[str] = Counter()
        # per step: S3 requests by operation and DB round trips since the previous record's result (the handler runs
        # its records one after another, as live_cost.py's PerRecord counts them)
        self.proxies: tuple[Any, Any] | None = None
        self.step_s3: dict[str, Counter[str]] = {}
        self.step_db: Counter[str] = Counter()
        self.last: tuple[Counter[str], int] | None = None

    def _attribute(self, step: str) -> None:
        if self.proxies is None:
            return
        s3p, pgp = self.proxies
        now = (s3p.snapshot().operations, pgp.round_trips)
        if self.last is not None:
            self.step_s3.setdefault(step, Counter()).update(now[0] - self.last[0])
            self.step_db[step] += now[1] - self.last[1]
        self.last = now

    def add(self, sample: Sample) -> None:
        self.by_key[sample.key] = sample
        self.by_key[sample.canonical] = sample

    def __call__(self, step: str, result: Any) -> None:
        now = time.time()
        self.outcomes[f"{step}:{result.outcome.value}"] += 1
        self._attribute(step)
        sample = self.by_key.get(result.key)
        if sample is None:
            return
        wanted = {"normalize": "normalized", "replicate": "mirrored", "link": "linked"}[step] if step in HOPS else None
        if result.outcome.value == wanted and step not in sample.hops:
            sample.hops[step] = now


def run_phase(ctx: dict[str, Any], phase: str, rate: float, count: int, timeout: float) -> dict[str, Any]:
    from mediacanon.local import localrun

    stack, observer, s3p, pgp, sampler = ctx["stack"], ctx["observer"], ctx["s3_proxy"], ctx["pg_proxy"], ctx["sampler"]
    samples = [Sample(messy_key(phase, i), canonical_key(phase, i)) for i in range(count)]
    for s in samples:
        observer.add(s)
    with ctx["db"].cursor() as cur:
        cur.executemany(
            f"INSERT INTO {TABLE} (slug, icon) VALUES (%s, %s)",  # noqa: S608 - a constant table name
            [(slug(phase, i), s.key) for i, s in enumerate(samples)],
        )
    before_s3, before_db = s3p.snapshot().operations, pgp.round_trips
    sampler.phase = phase
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--upload", "--endpoint", ctx["moto_url"], "--bucket", ctx["primary"],
         "--phase", phase, "--rate", str(rate), "--count", str(count)],
        stdout=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    errors: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = json.loads(line)
            if "i" in msg:
                if "error" in msg:
                    errors.append(msg["error"])
                else:
                    samples[msg["i"]].put_at = msg["at"]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    records = failed = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = localrun.run(stack, until_idle=False, timeout=1.0, progress=False, **ctx["run_kwargs"])
        records += report.records
        failed += report.failed_records
        done = proc.poll() is not None and all("link" in s.hops for s in samples if s.put_at is not None)
        if done and not any(stack.depths().values()):
            break
    proc.wait()
    reader.join(5)
    # whatever is left (the retired sources' Object Deleted events), until idle
    try:
        report = localrun.run(
            stack, until_idle=True, timeout=max(30.0, deadline - time.monotonic()), progress=False, **ctx["run_kwargs"]
        )
    except localrun.IdleTimeout as exc:
        report = exc.report
    records += report.records
    failed += report.failed_records
    drained = time.time() - started
    s3 = s3p.snapshot().operations - before_s3
    db = pgp.round_trips - before_db
    from counting import reads_and_writes

    reads, writes = reads_and_writes(s3)
    settled = settled_count(ctx, samples)
    figures = phase_figures(samples)
    uploaded = sum(1 for s in samples if s.put_at is not None)
    figures.update(
        rate=rate, upload_errors=len(errors), errors_sample=errors[:3], uploaded=uploaded, settled=settled,
        failed=count - settled, records=records, failed_records=failed, wall_s=drained,
        s3=dict(sorted(s3.items())), s3_writes_per_upload=writes / max(uploaded, 1), s3_reads_per_upload=reads / max(uploaded, 1),
        db_round_trips_per_upload=db / max(uploaded, 1), dlq=sum(stack.dlq_depths().values()),
        latencies=[round(s.latency, 4) for s in samples if s.latency is not None],
    )  # fmt: skip
    return figures


def settled_count(ctx: dict[str, Any], samples: Sequence[Sample]) -> int:
    """Uploads whose row names the canonical key and whose canonical key both buckets hold (checked, not timed)."""
    s3 = ctx["s3"]
    rows = dict(ctx["db"].execute(f"SELECT slug, icon FROM {TABLE}").fetchall())  # noqa: S608
    keys = {}
    for bucket in (ctx["primary"], ctx["cdn"]):
        keys[bucket] = {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="icons/")
                        for o in p.get("Contents", [])}  # fmt: skip
    n = 0
    for s in samples:
        sl = s.canonical.removeprefix("icons/").removesuffix(".png")
        if rows.get(sl) == s.canonical and all(s.canonical in keys[b] for b in keys):
            n += 1
    return n


def measure(opts: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915 - one stack, set up and torn down in order
    import boto3
    import psycopg
    import yaml
    from counting import S3CountingProxy
    from live_cost import _pg_proxy
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from mediacanon.core import mediamap
    from mediacanon.local import embedded, localrun

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)  # noqa: S106
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    state = BENCH / ".work" / f"live-{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    external = os.environ.get("DATABASE_URL")
    moto_url, moto_pid = embedded.start_moto(state / "moto")
    suffix = uuid.uuid4().hex[:8]
    dbname = f"live_{suffix}"
    pg_url = ""
    try:
        pg_url = external or embedded.start_postgres(state / "pg", repo=REPO)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        conninfo = make_conninfo(pg_url, dbname=dbname)
        primary, cdn = f"live-{suffix}-media", f"live-{suffix}-cdn"
        data = {
            "buckets": {"primary": primary, "cdn": cdn},
            "fields": [{"name": "archive.PublicationSource.icon", "table": TABLE, "column": "icon", "slug_column": "slug",
                        "upload_to": "icons/", "canonical": "icons/{slug}{ext}"}],
        }  # fmt: skip
        config = state / "mediamap.yaml"
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        media_map = mediamap.parse(data, source=str(config))
        s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
        for bucket in (primary, cdn):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        db = psycopg.connect(conninfo, autocommit=True)
        db.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, slug varchar(50) UNIQUE NOT NULL, "
            "name varchar(200) NOT NULL DEFAULT '', masthead varchar(100), icon varchar(100))"
        )
        stack = localrun.provision_media_map(media_map, TEMPLATE, endpoint_url=moto_url, stack_name=f"live-{suffix}")
        s3_proxy, pg_proxy = S3CountingProxy(moto_url), _pg_proxy(pg_url)
        s3_url, pg_port = s3_proxy.start(), pg_proxy.start()
        proxied = make_conninfo(conninfo, host="127.0.0.1", port=str(pg_port))
        observer = Observer()
        observer.proxies = (s3_proxy, pg_proxy)
        log = (state / "lambda-logs.jsonl").open("w", encoding="utf-8")
        sampler = Sampler(stack, moto_url, conninfo, dbname)
        sampler.start()
        ctx = {
            "stack": stack, "observer": observer, "s3_proxy": s3_proxy, "pg_proxy": pg_proxy, "sampler": sampler,
            "db": db, "s3": s3, "moto_url": moto_url, "primary": primary, "cdn": cdn,
            "run_kwargs": {"config": config, "database_url": proxied, "log": log, "observe": observer,
                           "environment": {"AWS_ENDPOINT_URL_S3": s3_url, "LOG_LEVEL": "WARNING",
                                           "POWERTOOLS_METRICS_DISABLED": "true"}},
        }  # fmt: skip
        phases: dict[str, Any] = {}
        try:
            if opts.warmup:  # the handlers' cold start (imports, first connections) before any measured phase
                print(f"live: {opts.warmup} warm-up uploads (not measured)", file=sys.stderr, flush=True)
                warm = run_phase(ctx, "warmup", 5, opts.warmup, timeout=opts.timeout)
                observer.step_s3.clear()
                observer.step_db.clear()
                observer.outcomes.clear()
                sampler.samples.clear()
                warmup = {k: warm[k] for k in ("uploads", "settled", "latency_s")}
            for spec in opts.rates:
                rate_s, count_s = spec.split(":")
                rate, count = float(rate_s), int(count_s)
                name = f"r{rate_s.replace('.', '_')}"
                print(f"live: {count} uploads at {rate:g}/s", file=sys.stderr, flush=True)
                phases[name] = run_phase(ctx, name, rate, count, timeout=count / rate + opts.timeout)
            if opts.burst:
                print(f"live: a burst of {opts.burst} uploads", file=sys.stderr, flush=True)
                phases["burst"] = run_phase(ctx, "burst", 0, opts.burst, timeout=opts.timeout + opts.burst * 0.5)
        finally:
            sampler.stopped.set()
            sampler.join(5)
            localrun.shutdown()
            s3_proxy.stop()
            pg_proxy.stop()
            log.close()
            db.close()
        live = assemble(phases, sampler.samples, observer)
        live["warmup"] = warmup if opts.warmup else None
        return live
    finally:
        embedded.stop_moto(moto_pid)
        if pg_url and not external:
            embedded.stop_postgres(state / "pg", repo=REPO)
        elif pg_url:
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def assemble(phases: dict[str, Any], depth_samples: list[dict[str, Any]], observer: Observer) -> dict[str, Any]:
    steady = {k: v for k, v in phases.items() if k != "burst"}
    by_rate = sorted(steady.values(), key=lambda p: p["rate"])
    slow, fast = (by_rate[0], by_rate[-1]) if by_rate else ({}, {})
    uploads = sum(p["uploaded"] for p in steady.values()) or 1

    def per(k: str) -> float:
        return sum(p[k] * p["uploaded"] for p in steady.values()) / uploads

    concurrency = maximum_concurrency(TEMPLATE.read_text(encoding="utf-8"))
    burst = phases.get("burst", {})
    t0 = depth_samples[0]["t"] if depth_samples else 0.0
    live: dict[str, Any] = {
        "p99_s_at_1": next((p["latency_s"]["p99"] for p in by_rate if p["rate"] == 1), None),
        "p99_s_at_20": next((p["latency_s"]["p99"] for p in by_rate if p["rate"] == 20), None),
        "s3_writes_per_upload": per("s3_writes_per_upload"),
        "s3_reads_per_upload": per("s3_reads_per_upload"),
        "db_round_trips_per_upload": per("db_round_trips_per_upload"),
        "burst_uploads": burst.get("uploads", 0),
        "burst_failed": burst.get("failed", 0),
        "burst_dlq": burst.get("dlq", 0),
        "max_db_connections": max((s["db_connections"] for s in depth_samples), default=0),
        "keep_up_ratio": keep_up_ratio(fast.get("latency_s", {}).get("p99"), slow.get("latency_s", {}).get("p99")),
        "maximum_concurrency": concurrency,
        "db_connection_bound": None if concurrency is None else concurrency * len(QUEUES),
        "burst_drain_s": burst.get("wall_s"),
        "max_queue_depth": {q: max((s["depths"][q] for s in depth_samples), default=0) for q in QUEUES},
        "outcomes": dict(sorted(observer.outcomes.items())),
        "by_step": {
            step: {"s3": dict(sorted(observer.step_s3.get(step, Counter()).items())), "db_round_trips": observer.step_db[step]}
            for step in HOPS
        },
        "phases": phases,
        "depth_samples": [{**s, "t": round(s["t"] - t0, 2)} for s in depth_samples],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "local_runner": "mediacanon.local.localrun.run: queues polled in turn, one batch (<= BatchSize) at a time, "
        "WaitTimeSeconds=0, no batching window, no concurrency",
    }
    live["targets"] = targets(live)
    return live


# -- rendering ----------------------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def plots(live: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    names = []
    fig, ax = plt.subplots(figsize=(7, 4))
    labels, data = [], []
    for name, p in live["phases"].items():
        if p["latencies"]:
            labels.append("burst" if name == "burst" else f"{p['rate']:g}/s")
            data.append(p["latencies"])
    if data:
        ax.boxplot(data, tick_labels=labels, whis=(1, 99), showfliers=True)
    ax.set_ylabel("PUT -> linked in both buckets (s)")
    ax.set_title("Live path latency by upload rate (local runner)")
    ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(OUT / "live-latency.png", dpi=100)
    plt.close(fig)
    names.append("live-latency.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    burst = [s for s in live["depth_samples"] if s["phase"] == "burst"]
    if burst:
        t0 = burst[0]["t"]
        for q in QUEUES:
            ax.plot([s["t"] - t0 for s in burst], [s["depths"][q] for s in burst], label=q)
        ax2 = ax.twinx()
        ax2.plot([s["t"] - t0 for s in burst], [s["db_connections"] for s in burst], "k:", label="DB connections")
        ax2.set_ylabel("DB connections")
        ax2.legend(loc="center right")
    ax.set_xlabel("s since the burst began")
    ax.set_ylabel("messages (visible + in flight)")
    ax.set_title(f"Queue depth through a burst of {live['burst_uploads']} uploads")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(OUT / "live-burst-queues.png", dpi=100)
    plt.close(fig)
    names.append("live-burst-queues.png")
    return names


def markdown(live: dict[str, Any]) -> str:
    lines = [
        "# The live path under load",
        "",
        f"Generated by `bench/live.py` ({live['measured_at']}; `make bench` runs it). Method: the docstring of `bench/live.py`.",
        f"Consumer: {live['local_runner']}: AWS's event-source mapping batches (BatchSize, MaximumBatchingWindowInSeconds) "
        "and runs up to MaximumConcurrency invocations per queue; neither happens here (the AWS side, modelled: live-model.md).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
    ]
    lines += [f"| {t['target']} | {_fmt(t['measured'])} | {_fmt(t['met'])} |" for t in targets(live)]
    lines += [
        "",
        "## Latency per phase (PUT returned -> LINKED; seconds)",
        "",
        "| phase | uploads | settled | p50 | p95 | p99 | max | normalize p50/p99 | replicate p50/p99 | link p50/p99 "
        "| S3 writes / reads per upload | DB round trips per upload | DLQ |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|",
    ]
    for name, p in live["phases"].items():
        lat, hops = p["latency_s"], p["hops_s"]
        hop = " | ".join(f"{_fmt(hops[h]['p50'])} / {_fmt(hops[h]['p99'])}" for h in HOPS)
        label = "burst" if name == "burst" else f"{p['rate']:g}/s"
        lines.append(
            f"| {label} | {p['uploads']} | {p['settled']} | {_fmt(lat['p50'])} | {_fmt(lat['p95'])} | {_fmt(lat['p99'])} "
            f"| {_fmt(lat['max'])} | {hop} | {p['s3_writes_per_upload']:.2f} / {p['s3_reads_per_upload']:.2f} "
            f"| {p['db_round_trips_per_upload']:.2f} | {p['dlq']} |"
        )
    lines += ["", "S3 requests by operation (handlers only; the upload's own PutObject is not in these):", ""]
    for name, p in live["phases"].items():
        lines.append(f"- {name}: " + ", ".join(f"{op} {n}" for op, n in p["s3"].items()))
    lines += [
        "",
        "All phases, by step (what the handler did between one record's result and the next; "
        "the burst included; first-record cold starts included):",
        "",
    ]
    for step, c in live.get("by_step", {}).items():
        ops = ", ".join(f"{op} {n}" for op, n in c["s3"].items())
        lines.append(f"- {step}: S3 {ops or 'none'}; DB round trips {c['db_round_trips']}")
    lines += [
        "",
        f"Max queue depth: {', '.join(f'{q} {n}' for q, n in live['max_queue_depth'].items())}; max DB connections "
        f"{live['max_db_connections']}; burst drained in {_fmt(live['burst_drain_s'])} s. Handler outcomes: "
        + ", ".join(f"{k} {v}" for k, v in live["outcomes"].items()),
        "",
        "![latency by rate](live-latency.png)",
        "",
        "![queue depth through the burst](live-burst-queues.png)",
        "",
    ]
    if live.get("warmup"):
        w = live["warmup"]
        lines.insert(
            4,
            f"Before the measured phases, {w['uploads']} warm-up uploads (the handlers' cold start: imports, first "
            f"connections; their p99 {_fmt(w['latency_s']['p99'])} s) are left out of every figure.",
        )
    return "\n".join(lines)


LINK = "\n## Live path under load\n\nUploads at 1, 5 and 20/s and a burst through django-storages, consumed by the real handlers: [results/live.md](results/live.md) (`bench/live.py`); plots: [latency by rate](results/live-latency.png), [queue depth through the burst](results/live-burst-queues.png). The same on AWS, as a model (EventBridge delivery, SQS polling, the batching windows, Lambda concurrency per queue; the chosen BatchSize and window): [results/live-model.md](results/live-model.md) (`bench/live_model.py`).\n"


def render(live: dict[str, Any]) -> None:
    plots(live)
    LIVE_MD.write_text(markdown(live), encoding="utf-8")
    if RESULTS_MD.exists() and "results/live.md" not in RESULTS_MD.read_text(encoding="utf-8"):
        with RESULTS_MD.open("a", encoding="utf-8") as f:  # bench.py regenerates RESULTS.md; the link goes back on
            f.write(LINK)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--rates", nargs="*", default=list(DEFAULT_RATES), help="RATE:COUNT per steady phase")
    parser.add_argument("--burst", type=int, default=1000, help="uploads at once (0: no burst)")
    parser.add_argument("--warmup", type=int, default=0, help="unmeasured uploads first (the handlers' cold start)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a phase may take beyond its uploads")
    parser.add_argument("--render", action="store_true", help="only render results/live.md and the plots from RESULTS.json")
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave RESULTS.json alone")
    parser.add_argument("--upload", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.upload:
        upload_main(opts)
        return
    if opts.render:
        render(json.loads(RESULTS_JSON.read_text())["live"])
        return
    live = measure(opts)
    for t in live["targets"]:
        print(f"{t['target']}: {_fmt(t['measured'])} met={_fmt(t['met'])}")
    if opts.no_write:
        return
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    results["live"] = merged(results.get("live", {}), live)
    RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str) + "\n")
    render(live)


if __name__ == "__main__":
    main()
