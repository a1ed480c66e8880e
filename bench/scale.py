"""The scale benchmark: a backfill of at least 100,000 messy objects on the local stack (one moto server, one
PostgreSQL), with the rows that reference them spread thin (ids in an order unrelated to the keys), beside a
10,000-object run for memory. Counts S3 requests per object and per row by operation at the wire, PostgreSQL round
trips, peak RSS; feeds the counts to the 10 M-object model (bench/scale_model.py); writes `"scale"` in
bench/RESULTS.json and regenerates docs/scale.md from it.

    .venv/bin/python bench/scale.py                       # 100,000 and 10,000 objects (~1 h on 2 cores)
    .venv/bin/python bench/scale.py --objects 20000 --baseline 2000   # a shorter run (does not meet "at least 100,000")
    .venv/bin/python bench/scale.py --render              # docs/scale.md again from RESULTS.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import scale_model  # noqa: E402
from counting import reads_and_writes  # noqa: E402

import bench as harness  # noqa: E402 - bench/bench.py: the stack, the proxies, the subprocess jobs

RESULTS_JSON = BENCH / "RESULTS.json"
SCALE_MD = REPO / "docs" / "scale.md"
TABLE = "archive_publicationsource"
FIELDS = (("icon", "icons/", "_icon_v2_final"), ("masthead", "mastheads/", "_masthead_v2_final"))
TARGETS = {
    "s3_writes_per_object": 2.05,
    "s3_reads_per_object": 0.03,
    "rows_s3_requests_per_row": 0.002,
    "rows_heads_per_row": 0.0,
    "peak_rss_ratio": 1.2,
    "model_10m_hours": 1.0,
    "model_10m_usd_per_million": 10.50,
    "backfill_wall_ratio_vs_aws_s3_sync": 2.2,
}


def slug(i: int) -> str:
    return f"{harness.PUBLISHERS[i % len(harness.PUBLISHERS)]}-{i:07d}"


def messy(column: str, i: int) -> str:
    _, prefix, suffix = next(f for f in FIELDS if f[0] == column)
    return f"{prefix}{slug(i)}{suffix}.png"


def canonical(column: str, i: int) -> str:
    _, prefix, _ = next(f for f in FIELDS if f[0] == column)
    return f"{prefix}{slug(i)}.png"


def body(column: str, i: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + hashlib.sha256(f"{column}{i}".encode()).digest() * (4 + i % 7)


def media_map(primary: str, cdn: str) -> dict[str, Any]:
    return {
        "buckets": {"primary": primary, "cdn": cdn},
        "fields": [
            {
                "name": f"archive.PublicationSource.{column}",
                "table": TABLE,
                "column": column,
                "slug_column": "slug",
                "upload_to": prefix,
                "canonical": prefix + "{slug}{ext}",
            }
            for column, prefix, _ in FIELDS
        ],
    }


def spread_thin(n: int) -> list[int]:
    """0..n-1 in an order unrelated to the keys (a multiplicative permutation): ids as a site adds rows over years."""
    step = next(p for p in range(7919, 10**6) if all(p % q for q in range(2, int(p**0.5) + 1)) and n % p)
    return [(i * step) % n for i in range(n)]


def build_site(ctx: dict[str, Any], n: int, primary: str, cdn: str, dbname: str) -> str:
    """n objects (half icons, half mastheads) under two prefixes, n/2 rows referencing them, inserted spread thin."""
    s3 = harness.s3_client(ctx["moto"])
    s3.create_bucket(Bucket=primary)
    s3.create_bucket(Bucket=cdn)
    s3.put_bucket_versioning(Bucket=primary, VersioningConfiguration={"Status": "Enabled"})
    sites = n // 2

    def put(item: tuple[str, int]) -> None:
        column, i = item
        s3.put_object(Bucket=primary, Key=messy(column, i), Body=body(column, i), ContentType="image/png")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, [(column, i) for column, _, _ in FIELDS for i in range(sites)]))
    database_url = harness.fresh_database(ctx["pg"], dbname)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, slug varchar(50) UNIQUE NOT NULL, "
            "icon varchar(100), masthead varchar(100))"
        )
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} (slug, icon, masthead) FROM STDIN") as copy:
            for i in spread_thin(sites):
                copy.write_row((slug(i), messy("icon", i), messy("masthead", i)))
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    return database_url


def apply_indexes(database_url: str, primary: str, cdn: str) -> None:
    """What `mediacanon db indexes` prints, applied as a team would."""
    from mediacanon.adapters.db import key_order_index
    from mediacanon.core import mediamap

    parsed = mediamap.parse(media_map(primary, cdn))
    with psycopg.connect(database_url, autocommit=True) as conn:
        for mapping in parsed.fields:
            conn.execute(key_order_index(mapping, "public").as_string(None))


# -- the measured jobs, each in a fresh subprocess (`scale.py _job ARGS_JSON OUT`) ----------------------------------


def job(args: dict[str, Any]) -> dict[str, Any]:
    from mediacanon.core import mediamap
    from mediacanon.local.sfnlocal import run_backfill

    parsed = mediamap.parse(media_map(args["primary"], args["cdn"]))
    start = time.perf_counter()
    result = run_backfill(
        parsed,
        endpoint_url=args["endpoint_url"],
        database_url=args["database_url"],
        progress=False,
        timeout=args["timeout"],
        phases=args.get("phases"),
    )
    return {
        "wall_s": time.perf_counter() - start,
        "status": result.status,
        "error": result.error,
        "failed_items": result.failed_items,
        "report_line": result.report_line,
        "report_counts": result.counts,
        "peak_rss_kib": harness.high_water_kib(),
    }


def in_subprocess(args: dict[str, Any], state: Path, timeout: float) -> dict[str, Any]:
    out = state / "scale-job.json"
    out.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "_job", json.dumps(args), str(out)], check=True, timeout=timeout
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# GET / on the endpoint: the local runner's watchdog asking whether moto still answers (mediacanon.local.sfnwatch),
# which the proxy names ListBuckets. The deployed state machine sends none: kept apart from the backfill's requests.
LOCAL_PROBE = "ListBuckets"


def counted(ctx: dict[str, Any], args: dict[str, Any]) -> tuple[dict[str, Any], Counter[str], int]:
    before, round_trips = ctx["s3_proxy"].snapshot(), ctx["pg_proxy"].round_trips
    result = in_subprocess(args, ctx["state"], ctx["timeout"] + 300)
    time.sleep(0.2)  # the proxy's last responses
    operations = ctx["s3_proxy"].snapshot().minus(before).operations
    result["local_probes"] = operations.pop(LOCAL_PROBE, 0)
    return result, operations, ctx["pg_proxy"].round_trips - round_trips


def parts(s3: Any, primary: str) -> Counter[str]:
    """The report parts the run wrote, by phase (objects-..., rows-...: the map runs' child executions), and the
    bytes of the merged report (report.json and report.csv)."""
    found: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=primary, Prefix="mediacanon-reports/"):
        for obj in page.get("Contents", []):
            if "/parts/" in obj["Key"]:
                found[obj["Key"].rsplit("/", 1)[-1].split("-", 1)[0]] += 1
            elif obj["Key"].endswith(("/report.json", "/report.csv")):
                found["report_bytes"] += obj["Size"]
    return found


def check(ctx: dict[str, Any], database_url: str, primary: str, cdn: str, n: int) -> dict[str, Any]:
    s3 = harness.s3_client(ctx["moto"])
    sites = n // 2
    expected = {canonical(c, i): hashlib.md5(body(c, i)).hexdigest() for c, _, _ in FIELDS for i in range(sites)}  # noqa: S324
    with psycopg.connect(database_url, autocommit=True) as conn:
        wrong = conn.execute(
            f"SELECT count(*) FROM {TABLE} WHERE icon NOT LIKE 'icons/%%' OR masthead NOT LIKE 'mastheads/%%' "  # noqa: S608
            "OR icon LIKE '%%_v2_final%%' OR masthead LIKE '%%_v2_final%%'"
        ).fetchone()
    return {
        "primary_exact": harness.listing(s3, primary) == expected,
        "cdn_exact": harness.listing(s3, cdn) == expected,
        "rows_not_canonical": int(wrong[0]) if wrong else -1,
    }


def measure(n: int, ctx: dict[str, Any], *, rows_alone: bool) -> dict[str, Any]:
    tag = f"scale-{n}"
    primary, cdn, dbname = f"{tag}-primary", f"{tag}-cdn", f"bench_scale_{n}"
    t0 = time.perf_counter()
    database_url = build_site(ctx, n, primary, cdn, dbname)
    apply_indexes(database_url, primary, cdn)
    print(f"  {n} objects and {n // 2} rows generated in {time.perf_counter() - t0:.0f}s", flush=True)
    proxied = make_conninfo(database_url, host="127.0.0.1", port=str(ctx["pg_proxy_port"]))
    args = {
        "endpoint_url": ctx["s3_proxy_url"],
        "database_url": proxied,
        "primary": primary,
        "cdn": cdn,
        "timeout": ctx["timeout"],
    }
    result, operations, round_trips = counted(ctx, args)
    found = parts(harness.s3_client(ctx["moto"]), primary)
    row: dict[str, Any] = {
        "objects": n,
        "rows": n,  # file references: n/2 rows with two file columns each
        "wall_s": result["wall_s"],
        "objects_per_s": n / result["wall_s"],
        "status": result["status"],
        "report_counts": result["report_counts"],
        "operations": dict(sorted(operations.items())),
        "db_round_trips": round_trips,
        "peak_rss_kib": result["peak_rss_kib"],
        "batches": found.get("objects", 0),
        "ranges": found.get("rows", 0),
        "report_bytes": found.get("report_bytes", 0),
        "local_probes": result["local_probes"],
    }
    print(
        f"  backfill: {result['wall_s']:.0f}s ({row['objects_per_s']:.0f} objects/s), {result['status']}: "
        f"{result['report_line'] or result['error']}",
        flush=True,
    )
    if rows_alone:  # the rows phase again, alone: every file in place, the common case
        again, rows_ops, _ = counted(ctx, args | {"phases": ["rows"]})
        row["rows_phase"] = {"wall_s": again["wall_s"], "operations": dict(sorted(rows_ops.items())), "status": again["status"]}
        print(f"  rows phase alone: {again['wall_s']:.1f}s, {sum(rows_ops.values())} S3 requests", flush=True)
    row["checks"] = check(ctx, database_url, primary, cdn, n)
    row["correct"] = (
        row["checks"]["primary_exact"]
        and row["checks"]["cdn_exact"]
        and row["checks"]["rows_not_canonical"] == 0
        and result["status"] == "SUCCEEDED"
        and not result["failed_items"]
        and (result["report_counts"] or {}).get("migrated") == n
    )
    harness.drop_database(ctx["pg"], dbname)
    return row


def live_path(ctx: dict[str, Any], n: int) -> dict[str, Any]:
    """What the live path does with a backfill's own events, per object (bench/live_cost.py's measurement)."""
    import live_cost

    results = live_cost.measure(n, moto_url=ctx["moto"], database_url=ctx["pg"], workdir=ctx["state"])
    per = max(results["migrated"], 1)
    total = results["total"]
    return {
        "objects": n,
        "messages_per_object": total["messages"] / per,
        "s3_per_object": {op: k / per for op, k in total["s3"].items()},
        "db_round_trips_per_object": total["db_round_trips"] / per,
        "verified": results["verified"],
    }


def compare(ctx: dict[str, Any], n: int) -> dict[str, Any]:
    """bench/bench.py's backfill section at n objects: aws s3 sync, rclone sync and the backfill, one after another
    in this run, each on buckets of its own; the wall-time ratio of the backfill to aws s3 sync."""
    rows = harness.measure_backfill(n, ctx | {"aws": harness.prepare_tools()})
    walls = {r["contender"]: r.get("wall_s") for r in rows}
    ratio = walls["mediacanon"] / walls["aws s3 sync"] if walls.get("mediacanon") and walls.get("aws s3 sync") else None
    return {"objects": n, "wall_s": walls, "ratio": ratio, "correct": all(r.get("correct") for r in rows)}


def figures(big: dict[str, Any], small: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    from mediacanon.backfill.listing import COPY_THREADS
    from mediacanon.backfill.mirror import MIRROR_WALKERS
    from mediacanon.backfill.report import PART_READERS
    from mediacanon.backfill.results import ROWS_PER_RANGE

    n = big["objects"]
    rows_ops = big["rows_phase"]["operations"]
    asl = json.loads((REPO / "statemachines" / "backfill.asl.json").read_text())
    measured = scale_model.Measured(
        objects=n,
        rows=big["rows"],
        prefixes=len(FIELDS),
        operations=big["operations"],
        migrated=int(big["report_counts"].get("migrated", 0)),
        retired=int(big["report_counts"].get("retired", big["report_counts"].get("migrated", 0))),
        batches=big["batches"],
        ranges=big["ranges"],
        fields=len(FIELDS),
        rows_per_range=ROWS_PER_RANGE,
        mirror_walkers=MIRROR_WALKERS,
        db_round_trips=big["db_round_trips"],
        rows_operations=rows_ops,
        copy_threads=COPY_THREADS,
        rows_concurrency=int(asl["States"]["Rows"]["MaxConcurrency"]),
        part_readers=PART_READERS,
        report_bytes_per_object=big["report_bytes"] / n,
        live_messages_per_object=live["messages_per_object"],
        live_operations_per_object=live["s3_per_object"],
    )
    return {
        **measured_figures(big, small, live, rows_ops),
        "measured": asdict(measured),
        **remodeled({"measured": asdict(measured)}),
    }


def remodeled(scale: dict[str, Any]) -> dict[str, Any]:
    modeled = scale_model.model(scale_model.Measured(**scale["measured"]))
    return {"model_10m_hours": modeled["hours"], "model_10m_usd_per_million": modeled["usd_per_million"], "model": modeled}


def measured_figures(
    big: dict[str, Any], small: dict[str, Any], live: dict[str, Any], rows_ops: dict[str, int]
) -> dict[str, Any]:
    n = big["objects"]
    reads, writes = reads_and_writes(Counter(big["operations"]))
    return {
        "objects": n,
        "s3_writes_per_object": writes / n,
        "s3_reads_per_object": reads / n,
        "s3_per_object_by_operation": {op: k / n for op, k in big["operations"].items()},
        "rows_s3_requests_per_row": sum(rows_ops.values()) / big["rows"],
        "rows_heads_per_row": rows_ops.get("HeadObject", 0) / big["rows"],
        "rows_s3_per_row_by_operation": {op: k / big["rows"] for op, k in rows_ops.items()},
        "db_round_trips_per_object": big["db_round_trips"] / n,
        "peak_rss_ratio": big["peak_rss_kib"] / small["peak_rss_kib"],
        "peak_rss_mib": {str(small["objects"]): small["peak_rss_kib"] / 1024, str(n): big["peak_rss_kib"] / 1024},
        "live_path": live,
        "runs": [small, big],
        "targets": TARGETS,
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_job":
        Path(sys.argv[3]).write_text(json.dumps(job(json.loads(sys.argv[2])), default=str))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=10_000, help="the smaller run, for peak RSS")
    parser.add_argument("--live-objects", type=int, default=1000, help="bench/live_cost.py's size")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--compare", type=int, default=2000, help="objects in the side-by-side run against aws s3 sync")
    parser.add_argument("--compare-only", action="store_true", help="only that run, merged into RESULTS.json's scale")
    parser.add_argument("--render", action="store_true", help="only regenerate docs/scale.md from RESULTS.json")
    opts = parser.parse_args()
    if opts.compare_only:
        results = json.loads(RESULTS_JSON.read_text())
        results["scale"] |= on_stack(opts, lambda ctx: with_ratio(compare(ctx, opts.compare)))
        RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str) + "\n")
    elif not opts.render:
        scale = run(opts)
        results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
        results["scale"] = scale
        RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str) + "\n")
    else:  # the model again, from the counts the run recorded (a change to the model needs no new run)
        results = json.loads(RESULTS_JSON.read_text())
        results["scale"] |= remodeled(results["scale"])
        RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str) + "\n")
    import scale_doc

    SCALE_MD.write_text(scale_doc.render(json.loads(RESULTS_JSON.read_text())["scale"]))
    print(f"results: {RESULTS_JSON} (scale) and {SCALE_MD}")


def with_ratio(compared: dict[str, Any]) -> dict[str, Any]:
    if not compared["correct"] or compared["ratio"] is None:
        sys.exit(f"the side-by-side run's result was wrong: {compared}")
    return {"compare": compared, "backfill_wall_ratio_vs_aws_s3_sync": compared["ratio"]}


def run(opts: argparse.Namespace) -> dict[str, Any]:
    def measured(ctx: dict[str, Any]) -> dict[str, Any]:
        print(f"== scale: {opts.baseline} objects", flush=True)
        small = measure(opts.baseline, ctx, rows_alone=False)
        print(f"== scale: {opts.objects} objects", flush=True)
        big = measure(opts.objects, ctx, rows_alone=True)
        print(f"== live path: {opts.live_objects} objects", flush=True)
        live = live_path(ctx, opts.live_objects)
        if not (small["correct"] and big["correct"] and live["verified"]):
            sys.exit(f"a run's result was wrong: its numbers are not a benchmark ({small['checks']}, {big['checks']})")
        print(f"== side by side with aws s3 sync: {opts.compare} objects", flush=True)
        return figures(big, small, live) | with_ratio(compare(ctx, opts.compare))

    return on_stack(opts, measured)


def on_stack(opts: argparse.Namespace, work: Any) -> dict[str, Any]:
    """`work(ctx)` on a moto server and a PostgreSQL of the run's own (or DATABASE_URL's), behind the counters."""
    from mediacanon.local import embedded

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=harness.REGION)  # noqa: S106
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    state = harness.WORK / f"scale-{os.getpid()}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    moto_url, moto_pid = embedded.start_moto(state / "moto")
    s3_proxy = harness.S3CountingProxy(moto_url)
    external = os.environ.get("DATABASE_URL")
    pg_proxy = None
    try:
        pg_url = external or embedded.start_postgres(state / "pg", repo=REPO)
        pg_proxy = harness.pg_round_trip_proxy(pg_url)
        ctx = {
            "moto": moto_url,
            "s3_proxy": s3_proxy,
            "s3_proxy_url": s3_proxy.start(),
            "pg": pg_url,
            "pg_proxy": pg_proxy,
            "pg_proxy_port": pg_proxy.start(),
            "state": state,
            "timeout": opts.timeout,
        }
        result: dict[str, Any] = work(ctx)
        return result
    finally:
        s3_proxy.stop()
        if pg_proxy is not None:
            pg_proxy.stop()
        embedded.stop_moto(moto_pid)
        if not external:
            embedded.stop_postgres(state / "pg", repo=REPO)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
