"""Benchmark: the mediacanon backfill against the by-hand peer, side by side, as ratios.

    .venv/bin/python bench/backfill_bench.py --objects 2000 20000
    .venv/bin/python bench/backfill_bench.py --quick            # 200 objects, a smoke run

For each size, on a stack of its own (a PostgreSQL from mediacanon.embedded, or DATABASE_URL; a fresh moto server
and a fresh database per contender, the same generated dataset for both):

- mediacanon: `mediacanon.sfnlocal.run_backfill` (the real ASL on moto's Step Functions executor, workers in-process);
- peer: the seed article's workflow done well: per object head_object + copy_object (MetadataDirective COPY) to the
  canonical name + UPDATE of the row + delete_object, in 10 threads (the Distributed Map's MaxConcurrency), then
  `aws s3 sync s3://primary s3://cdn --delete` (awscli from bench/requirements.txt, in bench/.venv-peer).

Each measured job runs in a fresh subprocess. Measured: wall time inside that subprocess around the work only;
S3 requests from the data moto server's request log (lines written while the subprocess ran); peak RSS as the
kernel's high-water marks (VmHWM of the job's process, ru_maxrss of its own children). The result is checked
afterwards (outside every measurement): both buckets hold exactly the canonical keys with the original bytes, every
row points at its canonical key, and mediacanon.verify passes; for mediacanon also its report line.
Results go to bench/results/backfill-<date>.json and .md (sizes measured the same day are merged).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.config import Config
from psycopg import sql
from psycopg.conninfo import make_conninfo

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
PEER_VENV = BENCH / ".venv-peer"
REGION = "us-east-1"
CONCURRENCY = 10  # statemachines/backfill.asl.json: the objects Distributed Map's MaxConcurrency
PRIMARY, CDN = "bench-primary", "bench-cdn"
TABLE = "archive_publicationsource"
PUBLISHERS = ("nytimes", "bbc", "reuters", "guardian", "lemonde", "el-pais", "spiegel", "asahi", "globo", "hindu")
MEDIA_MAP: dict[str, Any] = {
    "buckets": {"primary": PRIMARY, "cdn": CDN},
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
# werkzeug's request line in moto's log (some wrapped in ANSI colour codes, stripped first): "HEAD /bucket/key HTTP/1.1" 200
ANSI = re.compile(r"\x1b\[[0-9;]*m")
REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/1\.[01]" (\d{3})')


# -- the dataset ---------------------------------------------------------------------------------------------------


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


def s3_client(endpoint_url: str, pool: int = 32) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=Config(max_pool_connections=pool, retries={"max_attempts": 5, "mode": "standard"}),
    )


def generate(endpoint_url: str, database_url: str, n: int) -> None:
    """N messy objects in the primary bucket (threaded put_object), an empty CDN bucket, and a Django-like table
    of N rows referencing them (COPY)."""
    s3 = s3_client(endpoint_url)
    for bucket in (PRIMARY, CDN):
        s3.create_bucket(Bucket=bucket)

    def put(i: int) -> None:
        s3.put_object(Bucket=PRIMARY, Key=messy_key(i), Body=body(i), ContentType="image/png", CacheControl="max-age=86400")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(n)))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {TABLE} (id serial PRIMARY KEY, slug varchar(50) UNIQUE NOT NULL, "
            "name varchar(200) NOT NULL DEFAULT '', icon varchar(100), masthead varchar(100))"
        )
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} (slug, name, icon) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((slug(i), slug(i).replace("-", " ").title(), messy_key(i)))


# -- the measured jobs (each in a fresh subprocess: `backfill_bench.py _job KIND ARGS_JSON`) --------------------------


def high_water_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB


def job_mediacanon(args: dict[str, Any]) -> dict[str, Any]:
    from mediacanon import mediamap
    from mediacanon.sfnlocal import run_backfill

    media_map = mediamap.parse(MEDIA_MAP)
    start = time.perf_counter()
    result = run_backfill(
        media_map, endpoint_url=args["endpoint_url"], database_url=args["database_url"], progress=False, timeout=args["timeout"]
    )
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "status": result.status,
        "error": result.error,
        "failed_items": result.failed_items,
        "report_line": result.report_line,
        "report_counts": result.counts,
        "execution": result.execution_arn.rsplit(":", 1)[1],
    }


def peer_canonical(key: str) -> str:
    """The by-hand script's renaming rule for this dataset: icons/<slug>_icon_v2_final.png -> icons/<slug>.png."""
    return re.sub(r"(?:_icon)?(?:_v\d+)?(?:_final)?(\.[A-Za-z0-9]+)$", r"\1", key)


def job_peer(args: dict[str, Any]) -> dict[str, Any]:
    endpoint_url, database_url = args["endpoint_url"], args["database_url"]
    start = time.perf_counter()
    s3 = s3_client(endpoint_url, pool=CONCURRENCY + 2)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=PRIMARY) for o in page.get("Contents", [])]
    local = threading.local()
    connections: list[psycopg.Connection[Any]] = []
    lock = threading.Lock()

    def conn() -> psycopg.Connection[Any]:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(database_url, autocommit=True)
            with lock:
                connections.append(local.conn)
        return local.conn  # type: ignore[no-any-return]

    def rename(key: str) -> int:
        new = peer_canonical(key)
        if new == key:
            return 0
        s3.head_object(Bucket=PRIMARY, Key=key)  # the seed's existence check (a metadata call)
        s3.copy_object(Bucket=PRIMARY, Key=new, CopySource={"Bucket": PRIMARY, "Key": key}, MetadataDirective="COPY")
        conn().execute(f"UPDATE {TABLE} SET icon = %s WHERE icon = %s", (new, key))  # noqa: S608 - our own constant
        s3.delete_object(Bucket=PRIMARY, Key=key)
        return 1

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        renamed = sum(pool.map(rename, keys))
    for c in connections:
        c.close()
    renamed_s = time.perf_counter() - start
    sync = peer_sync(endpoint_url, args.get("aws"))
    return {
        "wall_s": time.perf_counter() - start,
        "rename_s": renamed_s,
        "sync_s": sync["seconds"],
        "sync_tool": sync["tool"],
        "renamed": renamed,
    }


def peer_sync(endpoint_url: str, aws: str | None) -> dict[str, Any]:
    """`aws s3 sync s3://primary s3://cdn --delete`; a boto3 equivalent only when awscli could not be installed."""
    start = time.perf_counter()
    if aws:
        cmd = [
            aws,
            "s3",
            "sync",
            f"s3://{PRIMARY}",
            f"s3://{CDN}",
            "--delete",
            "--endpoint-url",
            endpoint_url,
            "--only-show-errors",
        ]
        subprocess.run(cmd, check=True)
        return {"seconds": time.perf_counter() - start, "tool": "aws s3 sync --delete"}
    s3 = s3_client(endpoint_url, pool=CONCURRENCY + 2)

    def listing(bucket: str) -> dict[str, int]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    source, target = listing(PRIMARY), listing(CDN)
    copy = [k for k, size in source.items() if target.get(k) != size]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda k: s3.copy_object(Bucket=CDN, Key=k, CopySource={"Bucket": PRIMARY, "Key": k}), copy))
    extra = [k for k in target if k not in source]
    for i in range(0, len(extra), 1000):
        s3.delete_objects(Bucket=CDN, Delete={"Objects": [{"Key": k} for k in extra[i : i + 1000]], "Quiet": True})
    return {"seconds": time.perf_counter() - start, "tool": "boto3 sync equivalent (awscli unavailable)"}


def run_job(kind: str, args_json: str, out: str) -> None:
    args = json.loads(args_json)
    result = job_mediacanon(args) if kind == "mediacanon" else job_peer(args)
    result["peak_rss_kib"] = high_water_kib()
    result["children_peak_rss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(out).write_text(json.dumps(result))


# -- orchestration -------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    contender: str
    objects: int
    wall_s: float = 0.0
    objects_per_s: float = 0.0
    s3_requests: int = 0
    s3_requests_per_object: float = 0.0
    s3_requests_by_method: dict[str, int] = field(default_factory=dict)
    report_prefix_requests: int = 0  # mediacanon's per-batch report parts and the report itself
    peak_rss_mib: float = 0.0
    job: dict[str, Any] = field(default_factory=dict)
    correct: bool = False
    checks: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def count_requests(log: Path, offset: int) -> tuple[Counter[str], int]:
    methods: Counter[str] = Counter()
    reports = 0
    with log.open("rb") as f:
        f.seek(offset)
        for raw in f:
            m = REQUEST_LINE.search(ANSI.sub("", raw.decode(errors="replace")))
            if m is None or m.group(2).startswith("/moto-api"):
                continue
            methods[m.group(1)] += 1
            reports += "/mediacanon-reports/" in m.group(2)
    return methods, reports


def check_result(endpoint_url: str, database_url: str, n: int) -> dict[str, Any]:
    """Independent of how the work was done: both buckets hold exactly the canonical keys, byte-identical to the
    generated objects (ETag = MD5 of the small single-part bodies); every row points at its canonical key; and
    mediacanon's own three-way verify passes."""
    from mediacanon import mediamap
    from mediacanon.db import Database
    from mediacanon.ledger import Ledger
    from mediacanon.s3 import S3Adapter
    from mediacanon.verify import verify

    s3 = s3_client(endpoint_url)
    expected = {canonical_key(i): hashlib.md5(body(i)).hexdigest() for i in range(n)}  # noqa: S324 - S3's ETag

    def listing(bucket: str) -> dict[str, str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {
            o["Key"]: o["ETag"].strip('"')
            for page in pages
            for o in page.get("Contents", [])
            if not o["Key"].startswith("mediacanon-reports/")
        }

    primary, cdn = listing(PRIMARY), listing(CDN)
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows: dict[str, str | None] = dict(conn.execute(f"SELECT slug, icon FROM {TABLE}").fetchall())  # noqa: S608 - our own constant
    rows_ok = sum(rows.get(slug(i)) == canonical_key(i) for i in range(n))
    media_map = mediamap.parse(MEDIA_MAP)
    with Database(database_url) as db:
        verification = verify(media_map, S3Adapter(s3), db, Ledger(db, media_map.schema))
    checks = {
        "primary_exact": primary == expected,
        "cdn_exact": cdn == expected,
        "rows_canonical": rows_ok,
        "verify_ok": verification.ok,
        "verify_counts": verification.counts,
    }
    checks["ok"] = checks["primary_exact"] and checks["cdn_exact"] and rows_ok == n and verification.ok
    return checks


def measure(contender: str, n: int, pg_url: str, state: Path, timeout: float, aws: str | None) -> Measurement:
    from mediacanon import embedded

    m = Measurement(contender, n)
    dbname = f"bench_{contender}_{n}_{os.getpid()}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    database_url = make_conninfo(pg_url, dbname=dbname)
    moto_dir = state / f"moto-{contender}"
    endpoint_url, pid = embedded.start_moto(moto_dir)
    try:
        t0 = time.perf_counter()
        generate(endpoint_url, database_url, n)
        print(f"  {contender}: generated {n} objects and rows in {time.perf_counter() - t0:.1f}s", flush=True)
        log = moto_dir / f"moto-{endpoint_url.rsplit(':', 1)[1]}.log"
        offset = log.stat().st_size
        out = state / f"{contender}.json"
        args = {"endpoint_url": endpoint_url, "database_url": database_url, "timeout": timeout, "aws": aws}
        cmd = [sys.executable, str(Path(__file__).resolve()), "_job", contender, json.dumps(args), str(out)]
        try:
            subprocess.run(cmd, check=True, timeout=timeout + 120)
        except subprocess.CalledProcessError as exc:
            m.error = f"job exited with {exc.returncode}"
            print(f"  {contender}: FAILED {m.error}", flush=True)
            return m
        except subprocess.TimeoutExpired:
            m.error = f"job ran over {timeout + 120:.0f}s"
            print(f"  {contender}: FAILED {m.error}", flush=True)
            return m
        time.sleep(0.5)  # the server's last log lines
        methods, reports = count_requests(log, offset)
        m.job = json.loads(out.read_text())
        m.wall_s = m.job["wall_s"]
        m.objects_per_s = n / m.wall_s
        m.s3_requests = sum(methods.values())
        m.s3_requests_per_object = m.s3_requests / n
        m.s3_requests_by_method = dict(sorted(methods.items()))
        m.report_prefix_requests = reports
        m.peak_rss_mib = max(m.job["peak_rss_kib"], m.job["children_peak_rss_kib"]) / 1024
        m.checks = check_result(endpoint_url, database_url, n)
        if contender == "mediacanon":
            counts = m.job.get("report_counts", {})
            m.checks["report_migrated"] = counts.get("migrated")
            m.checks["report_failed"] = counts.get("failed")
            m.checks["ok"] = (
                m.checks["ok"]
                and m.job["status"] == "SUCCEEDED"
                and m.job["failed_items"] == 0
                and counts.get("migrated") == n
                and counts.get("failed") == 0
            )
        m.correct = bool(m.checks["ok"])
        print(
            f"  {contender}: {m.wall_s:.1f}s, {m.objects_per_s:.1f} objects/s, {m.s3_requests_per_object:.2f} S3 requests/object, "
            f"peak RSS {m.peak_rss_mib:.0f} MiB, correct={m.correct}"
            + (f" ({m.job.get('report_line')})" if contender == "mediacanon" else ""),
            flush=True,
        )
        return m
    finally:
        embedded.stop_moto(pid)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def ensure_awscli() -> str | None:
    """bench/.venv-peer with awscli from bench/requirements.txt (awscli pins botocore: never in the project's venv)."""
    requirements = BENCH / "requirements.txt"
    marker = PEER_VENV / ".installed"
    aws = PEER_VENV / "bin" / "aws"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text() == wanted and aws.exists():
        return str(aws)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
        pip = [str(PEER_VENV / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", "-r", str(requirements)]
        subprocess.run(pip, check=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"awscli could not be installed ({exc}): the peer syncs with a boto3 equivalent", file=sys.stderr)
        return None
    marker.write_text(wanted)
    return str(aws)


def run_size(n: int, timeout: float, aws: str | None) -> dict[str, Any]:
    from mediacanon import embedded

    state = WORK / f"run-{n}-{os.getpid()}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    external = os.environ.get("DATABASE_URL")
    datadir = state / "pg"
    pg_url = external or embedded.start_postgres(datadir, repo=REPO)
    print(f"== {n} objects (work dir {state})", flush=True)
    try:
        peer = measure("peer", n, pg_url, state, timeout, aws)
        mediacanon = measure("mediacanon", n, pg_url, state, timeout, aws)
    finally:
        if not external:
            embedded.stop_postgres(datadir, repo=REPO)
    shutil.rmtree(state, ignore_errors=True)
    return {"objects": n, "mediacanon": asdict(mediacanon), "peer": asdict(peer), "ratios": ratios(mediacanon, peer)}


def ratios(a: Measurement, b: Measurement) -> dict[str, float | None]:
    def ratio(x: float, y: float) -> float | None:
        return x / y if (x and y and a.error is None and b.error is None) else None

    return {
        "wall_s": ratio(a.wall_s, b.wall_s),
        "objects_per_s": ratio(a.objects_per_s, b.objects_per_s),
        "s3_requests_per_object": ratio(a.s3_requests_per_object, b.s3_requests_per_object),
        "peak_rss_mib": ratio(a.peak_rss_mib, b.peak_rss_mib),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(entry: dict[str, Any]) -> str:
    head = (
        "| | objects | wall s | objects/s | S3 requests/object | (without reports/) | peak RSS MiB | correct |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for name in ("mediacanon", "peer"):
        m = entry[name]
        if m["error"]:
            lines.append(f"| {name} | {m['objects']} | failed: {m['error'][:80]} | | | | | |")
            continue
        lines.append(
            f"| {name} | {m['objects']} | {m['wall_s']:.1f} | {m['objects_per_s']:.1f} | "
            f"{m['s3_requests_per_object']:.2f} | {(m['s3_requests'] - m['report_prefix_requests']) / m['objects']:.2f} | "
            f"{m['peak_rss_mib']:.0f} | {'yes' if m['correct'] else 'NO'} |"
        )
    r = entry["ratios"]
    lines.append(
        f"| **mediacanon / peer** | | {fmt(r['wall_s'], 2)} | {fmt(r['objects_per_s'], 2)} | "
        f"{fmt(r['s3_requests_per_object'], 2)} | | {fmt(r['peak_rss_mib'], 2)} | |"
    )
    return head + "\n".join(lines) + "\n"


def environment(aws: str | None) -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "layers", "statemachines"],
        capture_output=True,
        text=True,
        check=False,
    )
    aws_version = subprocess.run([aws, "--version"], capture_output=True, text=True, check=False).stdout.strip() if aws else None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else ""),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "moto": metadata.version("moto"),
        "boto3": metadata.version("boto3"),
        "awscli": aws_version,
        "concurrency": CONCURRENCY,
        "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded pgserver",
    }


def write_results(entries: list[dict[str, Any]], env: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"backfill-{datetime.now(UTC):%Y-%m-%d}.json"
    runs: dict[int, dict[str, Any]] = {}
    if path.exists():  # sizes measured earlier the same day stay; a size measured again is replaced
        runs = {e["objects"]: e for e in json.loads(path.read_text()).get("sizes", [])}
    for entry in entries:
        runs[entry["objects"]] = entry | {"environment": env}
    path.write_text(json.dumps({"sizes": [runs[k] for k in sorted(runs)]}, indent=2) + "\n")
    render(path)
    return path


def render(path: Path) -> None:
    """The .md beside a results .json: a table per size, the request mix, then the method (from bench/README.md)."""
    sizes = json.loads(path.read_text())["sizes"]
    md = [f"# Backfill benchmark, {path.stem.removeprefix('backfill-')}\n"]
    for entry in sizes:
        e = entry["environment"]
        mc, peer = entry["mediacanon"], entry["peer"]
        md.append(f"## {entry['objects']} objects\n")
        md.append(
            f"Measured {e['date']} at {e['commit']}: {e['cpus']} CPUs, Python {e['python']}, moto {e['moto']}, {e['awscli']}.\n"
        )
        md.append(table(entry))
        if entry.get("note"):
            md.append(f"\n**Note.** {entry['note']}\n")
        md.append(
            f"\nS3 requests by method: mediacanon {mc['s3_requests_by_method']} "
            f"(of which {mc['report_prefix_requests']} under mediacanon-reports/); peer {peer['s3_requests_by_method']}.  "
            f"\nmediacanon report: `{mc['job'].get('report_line')}`; peer: rename {fmt(peer['job'].get('rename_s'))} s + "
            f"{peer['job'].get('sync_tool')} {fmt(peer['job'].get('sync_s'))} s.\n"
        )
    md.append((BENCH / "README.md").read_text().split("<!-- method -->", 1)[-1] if (BENCH / "README.md").exists() else "")
    path.with_suffix(".md").write_text("\n".join(md))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "_job":
        run_job(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[2000, 20000], help="dataset sizes, one stack each")
    parser.add_argument("--quick", action="store_true", help="a 200-object smoke run")
    parser.add_argument("--timeout", type=float, default=2400, help="seconds each measured job may take")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only rewrite the .md of a results .json")
    opts = parser.parse_args()
    if opts.render:
        render(opts.render)
        return
    sizes = [200] if opts.quick else opts.objects
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)  # noqa: S106 - moto only
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    aws = ensure_awscli()
    env = environment(aws)
    entries = []
    for n in sizes:
        entries.append(run_size(n, opts.timeout, aws))
        path = write_results(entries, env)  # after every size: a later size that runs over still leaves these
        print(table(entries[-1]), flush=True)
    print(f"results: {path} and {path.with_suffix('.md')}")
    if not all(e[c]["correct"] for e in entries for c in ("mediacanon", "peer")):
        sys.exit("a contender's result was wrong or missing: its numbers are not a benchmark")


if __name__ == "__main__":
    main()
