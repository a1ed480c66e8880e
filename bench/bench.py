"""mediacanon beside the tools its users would otherwise use, in one run, on one moto server and one PostgreSQL.
Writes bench/RESULTS.md (the tables, the targets, the method) and bench/RESULTS.json (everything measured).

    make bench                                                          # the full run: 2,000 and 20,000 objects,
                                                                        # 10,000 and 100,000 rows
    .venv/bin/python bench/bench.py --objects 2000 --rows 10000         # a shorter one
    .venv/bin/python bench/bench.py --render                            # rewrite RESULTS.md from RESULTS.json

Sections (method in bench/README.md):
1. backfill: mediacanon's full backfill (normalize + mirror + link + retire) of N messy objects beside `aws s3 sync`
   and `rclone sync` mirroring the same N objects between the same kind of buckets;
2. relink: rows moved to their canonical keys: mediacanon's compare-and-swap beside the sample Django project's
   per-row `.save()` and `bulk_update`;
3. peak memory of the local backfill (from section 1);
4. each Lambda handler's cold import (`python -X importtime`).
S3 requests and object bytes are counted by an HTTP proxy in front of the moto server, PostgreSQL round trips by a
TCP proxy in front of PostgreSQL (bench/counting.py): the same way for every contender.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import psycopg
from botocore.config import Config
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
PEER_VENV = BENCH / ".venv-peer"
RESULTS_MD, RESULTS_JSON = BENCH / "RESULTS.md", BENCH / "RESULTS.json"
REGION = "us-east-1"
TABLE = "archive_publicationsource"
PUBLISHERS = ("nytimes", "bbc", "reuters", "guardian", "lemonde", "el-pais", "spiegel", "asahi", "globo", "hindu")
HANDLERS = ("normalize", "replicate", "link", "backfill")
IMPORT_RUNS = 5
RELINK_BATCH = 1000  # rows per compare-and-swap transaction, and Django's bulk_update batch_size
TARGETS = {"writes": 2.05, "reads": 0.05, "relink_speedup": 50.0, "memory_ratio": 1.2, "import_ms": 250.0}

sys.path.insert(0, str(BENCH))  # bench/counting.py, run as a script from anywhere
from counting import PgRoundTripProxy, S3CountingProxy, S3Tally, cost_usd, reads_and_writes  # noqa: E402

# -- the dataset -----------------------------------------------------------------------------------------------------


def slug(i: int) -> str:
    return f"{PUBLISHERS[i % len(PUBLISHERS)]}-{i:06d}"


def messy_key(i: int) -> str:
    return f"icons/{slug(i)}_icon_v2_final.png"


def canonical_key(i: int) -> str:
    return f"icons/{slug(i)}.png"


def body(i: int) -> bytes:
    """Small, real, distinct bytes: a PNG signature and 128-320 bytes derived from the slug."""
    digest = hashlib.sha256(slug(i).encode()).digest()
    return b"\x89PNG\r\n\x1a\n" + digest * (4 + i % 7)


def media_map(primary: str, cdn: str) -> dict[str, Any]:
    return {
        "buckets": {"primary": primary, "cdn": cdn},
        "fields": [
            {
                "name": "archive.PublicationSource.icon",
                "table": TABLE,
                "column": "icon",
                "slug_column": "slug",
                "upload_to": "icons/",
                "canonical": "icons/{slug}{ext}",
            }
        ],
    }


def s3_client(endpoint_url: str, pool: int = 32) -> Any:
    config = Config(max_pool_connections=pool, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION, config=config)


def put_objects(endpoint_url: str, bucket: str, n: int) -> None:
    s3 = s3_client(endpoint_url)
    s3.create_bucket(Bucket=bucket)

    def put(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=messy_key(i), Body=body(i), ContentType="image/png", CacheControl="max-age=86400")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(n)))


def fresh_database(pg_url: str, name: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(pg_url, dbname=name)


def drop_database(pg_url: str, name: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def django_env(database_url: str) -> dict[str, str]:
    return os.environ | {"DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "archive_site.settings", "DJANGO_DEBUG": "0"}


def migrate_sample(database_url: str) -> None:
    """The sample project's own tables, by its own migrations."""
    cmd = [sys.executable, str(REPO / "sample" / "manage.py"), "migrate", "--verbosity", "0"]
    subprocess.run(cmd, check=True, env=django_env(database_url), cwd=REPO)


def fill_rows(database_url: str, n: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLE} RESTART IDENTITY")
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} (slug, name, icon) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((slug(i), slug(i).replace("-", " ").title(), messy_key(i)))
        conn.execute(f"VACUUM ANALYZE {TABLE}")


# -- the measured jobs: each in a fresh subprocess (`bench.py _job KIND ARGS_JSON OUT`) -------------------------------


def high_water_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def job_mediacanon_backfill(args: dict[str, Any]) -> dict[str, Any]:
    from mediacanon.core import mediamap
    from mediacanon.local.sfnlocal import run_backfill

    parsed = mediamap.parse(media_map(args["primary"], args["cdn"]))
    start = time.perf_counter()
    result = run_backfill(
        parsed, endpoint_url=args["endpoint_url"], database_url=args["database_url"], progress=False, timeout=args["timeout"]
    )
    return {
        "wall_s": time.perf_counter() - start,
        "status": result.status,
        "error": result.error,
        "failed_items": result.failed_items,
        "report_line": result.report_line,
        "report_counts": result.counts,
        "batches": sum(c.get("total", 0) for c in result.map_run_counts.values()),
    }


def job_aws_sync(args: dict[str, Any]) -> dict[str, Any]:
    cmd = [args["aws"], "s3", "sync", f"s3://{args['primary']}", f"s3://{args['cdn']}", "--delete"]
    cmd += ["--endpoint-url", args["endpoint_url"], "--only-show-errors"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return {"wall_s": time.perf_counter() - start}


def job_rclone_sync(args: dict[str, Any]) -> dict[str, Any]:
    config = Path(args["state"]) / "rclone.conf"
    config.write_text(
        "[bench]\ntype = s3\nprovider = Other\naccess_key_id = testing\nsecret_access_key = testing\n"
        f"endpoint = {args['endpoint_url']}\nforce_path_style = true\nregion = {REGION}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone refuses this machine's global bundle
    cmd = ["rclone", "sync", f"bench:{args['primary']}", f"bench:{args['cdn']}", "--config", str(config)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return {"wall_s": time.perf_counter() - start}


def new_value(slug_value: str) -> str:
    return f"icons/{slug_value}.png"


def job_django(args: dict[str, Any]) -> dict[str, Any]:
    os.environ.update(django_env(args["database_url"]))
    sys.path.insert(0, str(REPO / "sample"))  # as sample/manage.py does
    import django

    django.setup()
    from archive_site.archive.models import PublicationSource  # type: ignore[import-not-found]

    start = time.perf_counter()
    objects = list(PublicationSource.objects.all())
    for obj in objects:
        obj.icon = new_value(obj.slug)
    if args["mode"] == "save":
        for obj in objects:  # what a data migration or a shell loop does
            obj.save()
    else:
        PublicationSource.objects.bulk_update(objects, ["icon"], batch_size=RELINK_BATCH)
    return {"wall_s": time.perf_counter() - start, "rows": len(objects)}


def job_mediacanon_relink(args: dict[str, Any]) -> dict[str, Any]:
    from mediacanon.adapters.db import Database, Swap
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.core import mediamap

    mapping = mediamap.parse(media_map("unused-primary", "unused-cdn")).fields[0]
    with Database(args["database_url"]) as db:
        ledger = Ledger(db)
        ledger.ensure()  # created once per database, before the clock
        db.check_field(mapping)
        start = time.perf_counter()
        rows = list(db.iter_rows(mapping, batch_size=5000))
        swaps = [Swap(row.id, row.value, new_value(row.slug)) for row in rows]
        changed = 0
        if args["mode"] == "swap":  # compare-and-swap, RELINK_BATCH rows per transaction
            for i in range(0, len(swaps), RELINK_BATCH):
                changed += len(db.swap(mapping, swaps[i : i + RELINK_BATCH]))
        else:  # one ledger transaction per object, as the objects phase links each source
            for swap in swaps:
                changed += ledger.link(
                    mapping, [swap], source_key=swap.old, canonical_key=str(swap.new), etag=None, sequencer=None
                ).rows_changed
        return {"wall_s": time.perf_counter() - start, "rows": changed}


JOBS = {
    "mediacanon": job_mediacanon_backfill,
    "aws s3 sync": job_aws_sync,
    "rclone sync": job_rclone_sync,
    "django save()": job_django,
    "django bulk_update": job_django,
    "mediacanon swap": job_mediacanon_relink,
    "mediacanon per-object ledger": job_mediacanon_relink,
}


def run_job(kind: str, args_json: str, out: str) -> None:
    result = JOBS[kind](json.loads(args_json))
    result["peak_rss_kib"] = max(high_water_kib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    Path(out).write_text(json.dumps(result, default=str))


def in_subprocess(kind: str, args: dict[str, Any], state: Path, timeout: float) -> dict[str, Any]:
    out = state / "job.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_job", kind, json.dumps(args), str(out)]
    subprocess.run(cmd, check=True, timeout=timeout)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# -- section 1: the backfill beside aws s3 sync and rclone sync ------------------------------------------------------


def listing(s3: Any, bucket: str) -> dict[str, str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {
        o["Key"]: o["ETag"].strip('"') for p in pages for o in p.get("Contents", []) if not o["Key"].startswith("mediacanon-")
    }


def check_mirror(endpoint_url: str, primary: str, cdn: str, n: int) -> dict[str, Any]:
    s3 = s3_client(endpoint_url)
    expected = {messy_key(i): hashlib.md5(body(i)).hexdigest() for i in range(n)}  # noqa: S324 - S3's ETag
    source, mirror = listing(s3, primary), listing(s3, cdn)
    return {"ok": source == expected and mirror == expected, "primary_exact": source == expected, "cdn_exact": mirror == expected}


def check_backfill(endpoint_url: str, database_url: str, primary: str, cdn: str, n: int, job: dict[str, Any]) -> dict[str, Any]:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.checks.verify import verify
    from mediacanon.core import mediamap

    s3 = s3_client(endpoint_url)
    expected = {canonical_key(i): hashlib.md5(body(i)).hexdigest() for i in range(n)}  # noqa: S324
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = dict(conn.execute(f"SELECT slug, icon FROM {TABLE}").fetchall())  # noqa: S608
    parsed = mediamap.parse(media_map(primary, cdn))
    with Database(database_url) as db:
        verification = verify(parsed, S3Adapter(s3), db, Ledger(db, parsed.schema))
    head = s3.head_object(Bucket=primary, Key=canonical_key(0))
    checks = {
        "primary_exact": listing(s3, primary) == expected,
        "cdn_exact": listing(s3, cdn) == expected,
        "rows_canonical": sum(rows.get(slug(i)) == canonical_key(i) for i in range(n)),
        "headers_kept": head["ContentType"] == "image/png" and head.get("CacheControl") == "max-age=86400",
        "verify_ok": verification.ok,
        "report": job.get("report_counts"),
    }
    checks["ok"] = bool(
        checks["primary_exact"]
        and checks["cdn_exact"]
        and checks["rows_canonical"] == n
        and checks["headers_kept"]
        and verification.ok
        and job.get("status") == "SUCCEEDED"
        and job.get("failed_items") == 0
        and (job.get("report_counts") or {}).get("migrated") == n
    )
    return checks


def measure_backfill(n: int, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for contender in ("aws s3 sync", "rclone sync", "mediacanon"):
        tag = {"aws s3 sync": "aws", "rclone sync": "rclone", "mediacanon": "mc"}[contender]
        primary, cdn = f"{tag}-{n}-primary", f"{tag}-{n}-cdn"
        t0 = time.perf_counter()
        put_objects(ctx["moto"], primary, n)
        s3_client(ctx["moto"]).create_bucket(Bucket=cdn)
        database_url = ""
        dbname = f"bench_backfill_{tag}_{n}"
        if contender == "mediacanon":
            database_url = fresh_database(ctx["pg"], dbname)
            fill_rows_plain(database_url, n)
        print(f"  {contender}: {n} objects generated in {time.perf_counter() - t0:.0f}s", flush=True)
        proxied = make_conninfo(database_url, host="127.0.0.1", port=str(ctx["pg_proxy_port"])) if database_url else ""
        args = {
            "endpoint_url": ctx["s3_proxy_url"],
            "database_url": proxied,
            "primary": primary,
            "cdn": cdn,
            "aws": ctx["aws"],
            "state": str(ctx["state"]),
            "timeout": ctx["timeout"],
        }
        row: dict[str, Any] = {"section": "backfill", "contender": contender, "objects": n}
        before, round_trips = ctx["s3_proxy"].snapshot(), ctx["pg_proxy"].round_trips
        try:
            job = in_subprocess(contender, args, ctx["state"], ctx["timeout"] + 300)
        except (subprocess.SubprocessError, OSError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            print(f"  {contender}: FAILED {row['error']}", flush=True)
            rows.append(row)
            continue
        time.sleep(0.2)  # the proxy's last responses
        tally = ctx["s3_proxy"].snapshot().minus(before)
        row |= s3_figures(tally, n, job)
        row["db_round_trips_per_object"] = (ctx["pg_proxy"].round_trips - round_trips) / n
        if contender == "mediacanon":
            row["checks"] = check_backfill(ctx["moto"], database_url, primary, cdn, n, job)
            drop_database(ctx["pg"], dbname)
        else:
            row["checks"] = check_mirror(ctx["moto"], primary, cdn, n)
        row["correct"] = row["checks"]["ok"]
        print(
            f"  {contender}: {row['wall_s']:.1f}s, {row['objects_per_s']:.0f} objects/s, writes {row['writes_per_object']:.3f}"
            f" reads {row['reads_per_object']:.3f} per object, {row['object_bytes']} object bytes through the client,"
            f" peak RSS {row['peak_rss_mib']:.0f} MiB, correct={row['correct']}",
            flush=True,
        )
        rows.append(row)
    return rows


def fill_rows_plain(database_url: str, n: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, slug varchar(50) UNIQUE NOT NULL, "
            "name varchar(200) NOT NULL DEFAULT '', masthead varchar(100), icon varchar(100))"
        )
    fill_rows(database_url, n)


def s3_figures(tally: S3Tally, n: int, job: dict[str, Any]) -> dict[str, Any]:
    reads, writes = reads_and_writes(tally.operations)
    return {
        "wall_s": job["wall_s"],
        "objects_per_s": n / job["wall_s"],
        "requests": sum(tally.operations.values()),
        "operations": dict(sorted(tally.operations.items())),
        "reads_per_object": reads / n,
        "writes_per_object": writes / n,
        "requests_per_object": sum(tally.operations.values()) / n,
        "usd_per_million_objects": cost_usd(tally.operations) / n * 1_000_000,
        "object_bytes": tally.object_bytes,
        "report_bytes": tally.report_bytes,
        "wire_bytes": tally.wire_bytes,
        "peak_rss_mib": job["peak_rss_kib"] / 1024,
        "job": job,
    }


# -- section 2: relinking rows -----------------------------------------------------------------------------------------


def measure_relink(n: int, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    dbname = f"bench_relink_{n}"
    direct = fresh_database(ctx["pg"], dbname)
    migrate_sample(direct)
    proxied = make_conninfo(direct, host="127.0.0.1", port=str(ctx["pg_proxy_port"]))
    rows = []
    contenders = ["django save()", "django bulk_update", "mediacanon swap"]
    if n <= ctx["per_object_ledger_rows"]:
        contenders.append("mediacanon per-object ledger")
    for contender in contenders:
        fill_rows(direct, n)
        with psycopg.connect(direct, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS mediacanon CASCADE")
        mode = {"django save()": "save", "django bulk_update": "bulk_update", "mediacanon swap": "swap"}.get(contender, "ledger")
        args = {"database_url": proxied, "mode": mode}
        row: dict[str, Any] = {"section": "relink", "contender": contender, "rows": n}
        before = ctx["pg_proxy"].round_trips
        try:
            job = in_subprocess(contender, args, ctx["state"], ctx["timeout"])
        except (subprocess.SubprocessError, OSError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            continue
        row["round_trips"] = ctx["pg_proxy"].round_trips - before
        with psycopg.connect(direct, autocommit=True) as conn:
            done = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE icon = 'icons/' || slug || '.png'").fetchone()  # noqa: S608
        row |= {
            "wall_s": job["wall_s"],
            "rows_per_s": n / job["wall_s"],
            "round_trips_per_row": row["round_trips"] / n,
            "peak_rss_mib": job["peak_rss_kib"] / 1024,
            "correct": bool(done and done[0] == n and job["rows"] == n),
            "job": job,
        }
        print(
            f"  {contender}: {n} rows in {row['wall_s']:.1f}s, {row['rows_per_s']:.0f} rows/s, "
            f"{row['round_trips']} round trips, correct={row['correct']}",
            flush=True,
        )
        rows.append(row)
    drop_database(ctx["pg"], dbname)
    return rows


# -- section 4: handler import time ------------------------------------------------------------------------------------


# What each handler is measured beside: the template's default (Lambda's Active tracing, no X-Ray SDK in the
# process), the X-Ray SDK's subsegments on (template parameter XRaySdkSubsegments=true), and the floor every
# S3-calling handler pays: importing boto3 and building its S3 client.
IMPORT_VARIANTS = {"default": {"POWERTOOLS_TRACE_DISABLED": "true"}, "x-ray sdk": {"POWERTOOLS_TRACE_DISABLED": "false"}}
FLOOR = "import boto3; boto3.client('s3')"


def _import_ms(cmd: list[str], cwd: Path, env: dict[str, str], root: str) -> tuple[float, dict[str, int]]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    modules = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        _, cumulative, module = line.split("|")
        modules[module[1:].rstrip()] = int(cumulative)  # the nesting stays as leading spaces
    return modules[root] / 1000, modules


def measure_imports(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    config = ctx["state"] / "mediamap.yaml"
    config.write_text(json.dumps(media_map("bench-primary", "bench-cdn")))  # JSON is YAML
    base_env = os.environ | {
        "PYTHONPATH": str(REPO / "layers" / "core"),  # as the layer is mounted on Lambda (/opt/python)
        "MEDIACANON_CONFIG": str(config),
        "DATABASE_URL": "postgresql://mediacanon@127.0.0.1:1/none",  # parsed at cold start, connected lazily
        "AWS_DEFAULT_REGION": REGION,
    }
    rows = []
    # the floor: boto3 and an S3 client, timed the same way (a module of its own, so importtime names it)
    floor_dir = ctx["state"] / "floor"
    floor_dir.mkdir(exist_ok=True)
    (floor_dir / "floor.py").write_text(FLOOR + "\n")
    floor_cmd = [sys.executable, "-X", "importtime", "-c", "import floor"]
    totals = [_import_ms(floor_cmd, floor_dir, base_env, "floor")[0] for _ in range(IMPORT_RUNS)]
    rows.append(
        {
            "section": "imports",
            "handler": "floor",
            "variant": FLOOR,
            "min_ms": min(totals),
            "median_ms": statistics.median(totals),
            "top_ms": {},
        }
    )
    print(f"  floor ({FLOOR}): import min {min(totals):.0f} ms", flush=True)
    for name in HANDLERS:
        for variant, extra in IMPORT_VARIANTS.items():
            env = base_env | extra | {"AWS_LAMBDA_FUNCTION_NAME": name, "POWERTOOLS_SERVICE_NAME": name}
            totals, top = [], Counter[str]()
            for _ in range(IMPORT_RUNS):
                ms, modules = _import_ms(
                    [sys.executable, "-X", "importtime", "-c", "import app"], REPO / "functions" / name, env, "app"
                )
                totals.append(ms)
                for module, us in modules.items():
                    if module.startswith("  ") and not module.startswith("   "):  # app's direct imports
                        top[module.strip()] += us // IMPORT_RUNS
            rows.append(
                {
                    "section": "imports",
                    "handler": name,
                    "variant": variant,
                    "min_ms": min(totals),
                    "median_ms": statistics.median(totals),
                    "top_ms": {m: us / 1000 for m, us in top.most_common(5)},
                }
            )
            print(f"  {name} ({variant}): import min {min(totals):.0f} ms, median {statistics.median(totals):.0f} ms", flush=True)
    return rows


# -- the run -------------------------------------------------------------------------------------------------------------


def ensure_awscli() -> str:
    """bench/.venv-peer with awscli from bench/requirements.txt (awscli pins botocore: never in the project's venv)."""
    requirements = BENCH / "requirements.txt"
    marker, aws = PEER_VENV / ".installed", PEER_VENV / "bin" / "aws"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if not (marker.exists() and marker.read_text() == wanted and aws.exists()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
        pip = [str(PEER_VENV / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", "-r", str(requirements)]
        subprocess.run(pip, check=True, timeout=600)
        marker.write_text(wanted)
    return str(aws)


def ensure_rclone() -> None:
    """Debian's rclone package, installed when missing (the harness runs as root on these machines)."""
    if shutil.which("rclone"):
        return
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    # a fresh machine's package lists may be empty or stale: apt-get install finds nothing until they are read
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "rclone"], check=True, env=env)


def environment(aws: str) -> dict[str, Any]:
    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()

    dirty = out("git", "-C", str(REPO), "status", "--porcelain", "--", "layers", "statemachines", "functions")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": out("git", "-C", str(REPO), "rev-parse", "--short", "HEAD") + ("-dirty" if dirty else ""),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "moto": metadata.version("moto"),
        "boto3": metadata.version("boto3"),
        "django": metadata.version("django"),
        "awscli": out(aws, "--version"),
        "rclone": out("rclone", "version").splitlines()[0] if shutil.which("rclone") else None,
        "postgresql": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded pgserver",
    }


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--objects", type=int, nargs="*", default=[2000, 20000], help="backfill sizes")
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000], help="relink sizes")
    parser.add_argument("--per-object-ledger-rows", type=int, default=10_000, help="largest relink size for that contender")
    parser.add_argument("--no-imports", action="store_true", help="skip the handlers' import times")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds each measured job may take")
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from RESULTS.json")
    return parser.parse_args()


def prepare_tools() -> str:
    """moto's fake credentials and nothing of the caller's AWS setup; the aws CLI (returned) and rclone installed."""
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)  # noqa: S106
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    aws = ensure_awscli()
    ensure_rclone()
    return aws


def pg_round_trip_proxy(pg_url: str) -> PgRoundTripProxy:
    """A round-trip counter in front of the server `pg_url` names: its unix socket or its TCP port."""
    params = conninfo_to_dict(pg_url)
    host = str(params.get("host") or "127.0.0.1")
    port = int(params.get("port") or 5432)
    return (
        PgRoundTripProxy(unix_socket=Path(host) / f".s.PGSQL.{port}")
        if host.startswith("/")
        else PgRoundTripProxy(host=host, port=port)
    )


def measure_all(opts: argparse.Namespace, ctx: dict[str, Any], results: dict[str, Any]) -> None:
    """Every section the options ask for, its rows added to `results` (written after each relink and backfill size)."""
    if not opts.no_imports:
        print("== handler import times", flush=True)
        results["rows"] += measure_imports(ctx)
    for n in opts.rows:
        print(f"== relink {n} rows", flush=True)
        results["rows"] += measure_relink(n, ctx)
        write(results)
    for n in opts.objects:
        print(f"== backfill {n} objects", flush=True)
        results["rows"] += measure_backfill(n, ctx)
        write(results)


def run(opts: argparse.Namespace, aws: str, state: Path, embedded: ModuleType) -> dict[str, Any]:
    """The measurements on a moto server and a PostgreSQL of the run's own (or DATABASE_URL's), behind the counters;
    `embedded` is mediacanon.local.embedded."""
    external = os.environ.get("DATABASE_URL")
    pg_dir = state / "pg"
    moto_url, moto_pid = embedded.start_moto(state / "moto")
    s3_proxy = S3CountingProxy(moto_url)
    pg_proxy = None
    results: dict[str, Any] = {"environment": environment(aws), "options": vars(opts), "rows": []}
    try:
        pg_url = external or embedded.start_postgres(pg_dir, repo=REPO)
        pg_proxy = pg_round_trip_proxy(pg_url)
        ctx = {
            "moto": moto_url,
            "s3_proxy": s3_proxy,
            "s3_proxy_url": s3_proxy.start(),
            "pg": pg_url,
            "pg_proxy": pg_proxy,
            "pg_proxy_port": pg_proxy.start(),
            "aws": aws,
            "state": state,
            "timeout": opts.timeout,
            "per_object_ledger_rows": opts.per_object_ledger_rows,
        }
        measure_all(opts, ctx, results)
    finally:
        s3_proxy.stop()
        if pg_proxy is not None:
            pg_proxy.stop()
        embedded.stop_moto(moto_pid)
        if not external:
            embedded.stop_postgres(pg_dir, repo=REPO)
    return results


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "_job":
        run_job(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    opts = options()
    if opts.render:
        render(json.loads(RESULTS_JSON.read_text()))
        return
    from mediacanon.local import embedded

    aws = prepare_tools()
    state = WORK / f"run-{os.getpid()}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    results = run(opts, aws, state, embedded)
    write(results)
    shutil.rmtree(state, ignore_errors=True)
    print(f"results: {RESULTS_MD} and {RESULTS_JSON}")
    if not all(r.get("correct", True) and "error" not in r for r in results["rows"]):
        sys.exit("a contender's result was wrong or missing: its numbers are not a benchmark")


def write(results: dict[str, Any]) -> None:
    # the sections bench/scale.py and bench/live.py write ("scale", "live"): kept until they run again
    previous = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    for section in ("scale", "live"):
        if section not in results and previous.get(section) is not None:
            results[section] = previous[section]
    RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str) + "\n")
    render(results)


# -- RESULTS.md ------------------------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(results: dict[str, Any]) -> None:
    RESULTS_MD.write_text(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    """RESULTS.md: the run's environment, the targets, one section per measurement, then the method (bench/README.md)."""
    rows = results["rows"]
    md = header_section(results["environment"])
    md += targets_section(rows)
    backfill = [r for r in rows if r["section"] == "backfill"]
    for n in sorted({r["objects"] for r in backfill}):
        md += backfill_section(n, [r for r in backfill if r["objects"] == n])
    relink = [r for r in rows if r["section"] == "relink"]
    for n in sorted({r["rows"] for r in relink}):
        md += relink_section(n, [r for r in relink if r["rows"] == n])
    md += memory_section(backfill)
    md += imports_section([r for r in rows if r["section"] == "imports"])
    readme = (BENCH / "README.md").read_text()
    md.append(readme.split("<!-- results -->", 1)[-1].strip() + "\n")
    if "live" in results:  # bench/live.py's section lives in results/live.md; RESULTS.md links it
        from live import LINK

        md.append(LINK)
        if "cold_start" in results["live"]:  # bench/cold_start.py's, in results/cold-start.md
            from cold_start import LINK as COLD_START_LINK

            md.append(COLD_START_LINK)
    return "\n".join(md)


def header_section(env: dict[str, Any]) -> list[str]:
    return [
        "# Benchmarks: mediacanon beside aws s3 sync, rclone and Django\n",
        f"One run ({env['date']}, commit {env['commit']}): {env['cpus']} CPUs, Python {env['python']}, moto {env['moto']}, "
        f"boto3 {env['boto3']}, Django {env['django']}, {env['awscli']}, {env['rclone']}, PostgreSQL: {env['postgresql']}. "
        "All contenders on the same moto server and the same PostgreSQL, one after the other. Generated by "
        "`make bench` (bench/bench.py); method and caveats below.\n",
    ]


def backfill_section(n: int, group: list[dict[str, Any]]) -> list[str]:
    """The backfill of n objects: a row per contender, mediacanon's ratios to each peer, S3 requests by operation."""
    md = [
        f"## Backfill of {n:,} messy objects beside mirroring tools\n",
        "| contender | wall s | objects/s | writes/object | reads/object | requests/object | $ per 1M objects "
        "(S3 requests) | object bytes through the client | DB round trips/object | peak RSS MiB | correct |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    md += [backfill_row(r) for r in group]
    md += backfill_ratio_rows(group)
    md.append("\nS3 requests by operation (whole job):\n")
    md += operations_lines(group)
    md.append("")
    return md


def backfill_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['contender']} | failed: {r['error'][:100]} | | | | | | | | | |"
    return (
        f"| {r['contender']} | {fmt(r['wall_s'])} | {fmt(r['objects_per_s'], 0)} | {r['writes_per_object']:.3f} | "
        f"{r['reads_per_object']:.3f} | {r['requests_per_object']:.3f} | {fmt(r['usd_per_million_objects'], 2)} | "
        f"{r['object_bytes']:,} | {r['db_round_trips_per_object']:.2f} | {fmt(r['peak_rss_mib'], 0)} | "
        f"{'yes' if r['correct'] else 'NO'} |"
    )


def backfill_ratio_rows(group: list[dict[str, Any]]) -> list[str]:
    """mediacanon's figures over each peer's that finished (none when mediacanon did not)."""
    mc = next((r for r in group if r["contender"] == "mediacanon" and "error" not in r), None)
    if not mc:
        return []
    return [
        f"| *mediacanon / {peer['contender']}* | {mc['wall_s'] / peer['wall_s']:.2f} | "
        f"{mc['objects_per_s'] / peer['objects_per_s']:.2f} | | | "
        f"{mc['requests_per_object'] / peer['requests_per_object']:.2f} | | | | "
        f"{mc['peak_rss_mib'] / peer['peak_rss_mib']:.2f} | |"
        for peer in group
        if peer["contender"] != "mediacanon" and "error" not in peer
    ]


def operations_lines(group: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in (r for r in group if "error" not in r):
        extra = ""
        if r["contender"] == "mediacanon":
            extra = f"; {r['job'].get('batches')} batches; report bytes {r['report_bytes']:,}; `{r['job'].get('report_line')}`"
        lines.append(f"- {r['contender']}: {r['operations']}{extra}")
    return lines


def relink_section(n: int, group: list[dict[str, Any]]) -> list[str]:
    """Relinking n rows: a row per contender, its speed against Django's per-row save()."""
    md = [
        f"## Relinking {n:,} rows to their canonical keys\n",
        "| contender | wall s | rows/s | round trips | round trips/row | speed vs save() | correct |\n|---|---:|---:|---:|---:|---:|---|",
    ]
    save = next((r for r in group if r["contender"] == "django save()" and "error" not in r), None)
    for r in group:
        if "error" in r:
            md.append(f"| {r['contender']} | failed: {r['error'][:100]} | | | | | |")
            continue
        speed = f"{r['rows_per_s'] / save['rows_per_s']:.1f}x" if save else "n/a"
        md.append(
            f"| {r['contender']} | {fmt(r['wall_s'], 2)} | {fmt(r['rows_per_s'], 0)} | {r['round_trips']:,} | "
            f"{r['round_trips_per_row']:.4f} | {speed} | {'yes' if r['correct'] else 'NO'} |"
        )
    md.append("")
    return md


def memory_section(backfill: list[dict[str, Any]]) -> list[str]:
    """mediacanon's peak memory at each backfill size, against the smallest's (nothing when it has no result)."""
    mem = [r for r in backfill if r["contender"] == "mediacanon" and "error" not in r]
    if not mem:
        return []
    md = ["## Peak memory of the local backfill\n", "| objects | peak RSS MiB | / smallest |\n|---:|---:|---:|"]
    base = min(mem, key=lambda r: r["objects"])["peak_rss_mib"]
    for r in sorted(mem, key=lambda r: r["objects"]):
        md.append(f"| {r['objects']:,} | {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / base:.2f} |")
    md.append("")
    return md


def imports_section(imports: list[dict[str, Any]]) -> list[str]:
    """Each handler's cold import against the floor's (boto3 and an S3 client); nothing when imports were skipped."""
    if not imports:
        return []
    md = [
        f"## Lambda handlers' cold import (`python -X importtime -c 'import app'`, {IMPORT_RUNS} runs)\n",
        "| handler | tracing | min ms | median ms | / floor | largest direct imports (ms, mean) |\n|---|---|---:|---:|---:|---|",
    ]
    floor = next((r for r in imports if r["handler"] == "floor"), None)
    for r in imports:
        top = ", ".join(f"{m} {ms:.0f}" for m, ms in r["top_ms"].items())
        ratio = f"{r['min_ms'] / floor['min_ms']:.2f}" if floor else "n/a"
        variant = f"`{r['variant']}`" if r["handler"] == "floor" else r.get("variant", "x-ray sdk")
        md.append(f"| {r['handler']} | {variant} | {r['min_ms']:.0f} | {r['median_ms']:.0f} | {ratio} | {top} |")
    md.append("")
    return md


def targets_section(rows: list[dict[str, Any]]) -> list[str]:
    out = ["## Targets\n", "| target | measured | |\n|---|---|---|"]
    mc = [r for r in rows if r["section"] == "backfill" and r["contender"] == "mediacanon" and "error" not in r]
    for r in mc:
        n = r["objects"]
        out.append(
            f"| ≤ {TARGETS['writes']} S3 writes per object ({n:,}) | {r['writes_per_object']:.3f} | {mark(r['writes_per_object'] <= TARGETS['writes'])} |"
        )
        out.append(
            f"| ≤ {TARGETS['reads']} S3 reads per object ({n:,}) | {r['reads_per_object']:.3f} | {mark(r['reads_per_object'] <= TARGETS['reads'])} |"
        )
        out.append(f"| 0 object bytes through the client ({n:,}) | {r['object_bytes']:,} | {mark(r['object_bytes'] == 0)} |")
    if len(mc) >= 2:
        small, large = min(mc, key=lambda r: r["objects"]), max(mc, key=lambda r: r["objects"])
        ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
        out.append(
            f"| peak memory flat in N ({large['objects']:,} ≤ {TARGETS['memory_ratio']} x {small['objects']:,}) | "
            f"{large['peak_rss_mib']:.0f} / {small['peak_rss_mib']:.0f} MiB = {ratio:.2f} | {mark(ratio <= TARGETS['memory_ratio'])} |"
        )
    relink = [r for r in rows if r["section"] == "relink" and "error" not in r]
    for n in sorted({r["rows"] for r in relink}):
        save = next((r for r in relink if r["rows"] == n and r["contender"] == "django save()"), None)
        swap = next((r for r in relink if r["rows"] == n and r["contender"] == "mediacanon swap"), None)
        if save and swap:
            speed = swap["rows_per_s"] / save["rows_per_s"]
            out.append(
                f"| relinking ≥ {TARGETS['relink_speedup']:.0f}x per-row save() ({n:,} rows) | {speed:.1f}x | {mark(speed >= TARGETS['relink_speedup'])} |"
            )
    for r in (r for r in rows if r["section"] == "imports" and r["handler"] != "floor"):  # the floor: a reference
        what = f"{r['handler']}, {r.get('variant', 'x-ray sdk')}"
        out.append(
            f"| handler import ≤ {TARGETS['import_ms']:.0f} ms ({what}, min of {IMPORT_RUNS}) | {r['min_ms']:.0f} ms | {mark(r['min_ms'] <= TARGETS['import_ms'])} |"
        )
    out.append("")
    return out


if __name__ == "__main__":
    main()
