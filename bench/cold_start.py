"""The live handlers' cold start as a ratio to the floor every S3-calling Lambda pays (issue 19).

    .venv/bin/python bench/cold_start.py                 # 7 rounds; writes RESULTS.json "live" and results/cold-start.md
    .venv/bin/python bench/cold_start.py --runs 3        # a shorter run
    .venv/bin/python bench/cold_start.py --no-write      # print the figures only

One moto server and one embedded PostgreSQL (mediacanon.local.embedded, as bench/live.py). Each measurement is a
fresh interpreter (`python -c`), its clock the system's monotonic one, read by this process just before it starts
the child and by the child after each stage:

- floor: `import boto3; boto3.client("s3")` (init), then one `head_object` to the moto server (+ one request);
- each live handler (functions/<name>/app.py, the layer as layers/core/Makefile builds it on PYTHONPATH, as Lambda
  mounts it, and no .pyc written, as on Lambda's read-only code): `import app`
  (init: Powertools' objects and the StepRunner, which reads the settings and parses the media map), then one
  `lambda_handler` call on one real SQS record wrapping an S3 EventBridge "Object Created" event that does the
  handler's real work (normalize copies a messy upload to its canonical key, replicate mirrors it to the CDN bucket,
  link moves the row and retires the source), against the moto server and PostgreSQL.

Two configurations of the settings: "deployed", as template.yaml configures the functions (the media map from an SSM
parameter, the database from a Secrets Manager secret, both on the moto server), and "file" (MEDIACANON_CONFIG and
DATABASE_URL). The rounds interleave the floor and every handler so that load on the machine falls on all alike.

cold_start_ratio = min(init + first record) / min(floor + one request), of the worst handler and configuration: a
lazy import that only moves work into the first record does not lower it. The init-only ratio is reported beside.
Where the time goes: `python -X importtime -c "import app"` per handler (its direct imports and the packages with
the most self time). Every figure is computed from these measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_JSON, RESULTS_MD = BENCH / "RESULTS.json", BENCH / "RESULTS.md"
LINK = (
    "\n## Live handlers' cold start\n\nEach live handler's init and first record against "
    '`import boto3; boto3.client("s3")` and one request: [results/cold-start.md](results/cold-start.md) '
    "(`bench/cold_start.py`).\n"
)
COLD_MD = BENCH / "results" / "cold-start.md"
REGION = "us-east-1"
HANDLERS = ("normalize", "replicate", "link")
CONFIGURATIONS = ("deployed", "file")
EXPECTED = {"normalize": "normalized", "replicate": "mirrored", "link": "linked"}
TARGET = 1.3
IMPORTTIME_RUNS = 3
FLOOR = 'import boto3; boto3.client("s3")'

# The children: stamps of the monotonic clock after interpreter start, after init, after the first record/request.
_CLOCK = "__import__('time').clock_gettime(1)"  # CLOCK_MONOTONIC, the clock this process reads before Popen
FLOOR_CHILD = f"""
t1 = {_CLOCK}
import boto3; s3 = boto3.client("s3")
t2 = {_CLOCK}
import sys
s3.head_object(Bucket=sys.argv[1], Key=sys.argv[2])
t3 = {_CLOCK}
print("COLD", t1, t2, t3, "ok", flush=True)
"""
HANDLER_CHILD = f"""
t1 = {_CLOCK}
import app
t2 = {_CLOCK}
import json, sys
from types import SimpleNamespace
event = json.loads(sys.argv[1])
context = SimpleNamespace(function_name=sys.argv[2], memory_limit_in_mb=512, aws_request_id="cold-start",
                          invoked_function_arn="arn:aws:lambda:us-east-1:111122223333:function:" + sys.argv[2])
answer = app.lambda_handler(event, context)
t3 = {_CLOCK}
print("COLD", t1, t2, t3, json.dumps(answer), flush=True)
"""
INIT_CHILD = f"""
t1 = {_CLOCK}
import app
t2 = {_CLOCK}
print("COLD", t1, t2, t2, "null", flush=True)
"""


# -- pure computations (tests/unit/test_cold_start.py) ------------------------------------------------------------------


def stats(samples_ms: Sequence[float]) -> dict[str, Any]:
    return {"min_ms": min(samples_ms), "median_ms": statistics.median(samples_ms), "runs": len(samples_ms)}


def ratio(handler: Mapping[str, Any], floor: Mapping[str, Any], stage: str, on: str = "min_ms") -> float:
    """A handler's `stage` ("init" or "first_record": init + the first record) over the floor's same stage."""
    return float(handler[stage][on]) / float(floor[stage][on])


def summarize(samples: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Any]:
    """Measured samples {"floor" | "<config>/<handler>": {"init": [ms], "first_record": [ms]}} -> the figures:
    per entry min/median, its ratios to the floor, and the worst entry's ratios (the headline)."""
    floor = {stage: stats(v) for stage, v in samples["floor"].items()}
    handlers: dict[str, Any] = {}
    for name, stages in samples.items():
        if name == "floor":
            continue
        entry: dict[str, Any] = {stage: stats(v) for stage, v in stages.items() if v}
        entry["init_ratio"] = ratio(entry, floor, "init")
        entry["init_ratio_median"] = ratio(entry, floor, "init", "median_ms")
        if "first_record" in entry:
            entry["first_record_ms"] = entry["first_record"]["min_ms"] - entry["init"]["min_ms"]
            entry["ratio"] = ratio(entry, floor, "first_record")
            entry["ratio_median"] = ratio(entry, floor, "first_record", "median_ms")
        handlers[name] = entry
    rated = {n: h for n, h in handlers.items() if "ratio" in h}
    worst = max(rated, key=lambda n: rated[n]["ratio"])
    worst_init = max(rated, key=lambda n: rated[n]["init_ratio"])
    return {
        "floor": floor,
        "handlers": handlers,
        "worst": worst,
        "cold_start_ratio": rated[worst]["ratio"],
        "cold_start_ratio_median": max(h["ratio_median"] for h in rated.values()),
        "init_ratio": rated[worst_init]["init_ratio"],
        "init_worst": worst_init,
        "target": TARGET,
        "met": rated[worst]["ratio"] <= TARGET,
    }


def merge(results: Mapping[str, Any], cold: Mapping[str, Any]) -> dict[str, Any]:
    """RESULTS.json with "live"."cold_start_ratio" and "live"."cold_start" set, every other key kept as it was."""
    merged = dict(results)
    live = dict(merged.get("live") or {})
    live["cold_start_ratio"] = float(cold["cold_start_ratio"])
    live["cold_start"] = dict(cold)
    merged["live"] = live
    return merged


def parse_importtime(stderr: str) -> list[tuple[int, str, int, int]]:
    """`python -X importtime` lines -> (depth, module, self us, cumulative us), in the order printed."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line or line.count("|") != 2:
            continue
        _, self_us, cumulative, module = (line.split(":", 1)[0], *line.split(":", 1)[1].split("|"))
        name = module[1:]
        rows.append(((len(name) - len(name.lstrip(" "))) // 2, name.strip(), int(self_us), int(cumulative)))
    return rows


def where_time_goes(stderr: str, root: str = "app", top: int = 8) -> dict[str, Any]:
    """The root module's total, its own body's time (self), its direct imports and the packages with most self time."""
    rows = parse_importtime(stderr)
    at = max((i for i, r in enumerate(rows) if r[1] == root), default=None)
    if at is None:
        return {}
    depth = rows[at][0]
    start = at  # importtime prints a module's imports before it: its subtree is the deeper rows just above it
    while start > 0 and rows[start - 1][0] > depth:
        start -= 1
    subtree = rows[start:at]
    direct = Counter({m: c for d, m, _, c in subtree if d == depth + 1})
    packages: Counter[str] = Counter()
    for _, module, self_us, _ in [*subtree, rows[at]]:
        packages[module.split(".")[0]] += self_us
    return {
        "total_ms": rows[at][3] / 1000,
        "self_ms": rows[at][2] / 1000,
        "direct_ms": {m: us / 1000 for m, us in direct.most_common(top)},
        "packages_self_ms": {m: us / 1000 for m, us in packages.most_common(top)},
        "all_packages_self_ms": {m: us / 1000 for m, us in packages.items()},
    }


def above_floor(handler: Mapping[str, Any], floor: Mapping[str, Any], top: int = 8) -> dict[str, float]:
    """Per package, the handler's import self time less the floor's (the module bodies as "module body"): what
    `import app` spends beyond `import boto3; boto3.client("s3")`, without counting a module twice."""
    mine, base = dict(handler["all_packages_self_ms"]), dict(floor["all_packages_self_ms"])
    mine["module body"], base["module body"] = mine.pop("app", 0.0), base.pop("floor", 0.0)
    extra = Counter({m: v - base.get(m, 0.0) for m, v in mine.items()})
    return {m: round(v, 1) for m, v in extra.most_common(top) if v > 0}


def budget(cold: Mapping[str, Any]) -> dict[str, float]:
    """What the target allows above the floor + request, and what the worst handler spends above it (min ms)."""
    floor = float(cold["floor"]["first_record"]["min_ms"])
    worst = cold["handlers"][cold["worst"]]
    return {
        "allowed_ms": (float(cold["target"]) - 1) * floor,
        "spent_ms": float(worst["first_record"]["min_ms"]) - floor,
        "first_record_ms": float(worst["first_record_ms"]),
        "floor_request_ms": floor - float(cold["floor"]["init"]["min_ms"]),
    }


def _ms(v: float) -> str:
    return f"{v:.0f}"


def markdown(cold: Mapping[str, Any]) -> str:
    floor = cold["floor"]
    met = "met" if cold["met"] else "**missed**"
    out = [
        "# Live handlers' cold start against the floor\n",
        f"Generated by `bench/cold_start.py` on {cold.get('date', '?')}, {cold.get('runs', '?')} fresh interpreters per "
        f"entry (min and median). Floor: `{FLOOR}`, then one `head_object` to the same moto server.\n",
        f"**cold_start_ratio = {cold['cold_start_ratio']:.2f}** (init + first record, worst: {cold['worst']}; target "
        f"≤ {cold['target']}: {met}); median-based {cold['cold_start_ratio_median']:.2f}. "
        f"Init only: {cold['init_ratio']:.2f} ({cold['init_worst']}).\n",
        "| entry | init min ms | init median ms | init + first record min ms | median ms | first record ms | "
        "init / floor | (init + record) / (floor + request) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| floor | {_ms(floor['init']['min_ms'])} | {_ms(floor['init']['median_ms'])} | "
        f"{_ms(floor['first_record']['min_ms'])} | {_ms(floor['first_record']['median_ms'])} | "
        f"{_ms(floor['first_record']['min_ms'] - floor['init']['min_ms'])} | 1.00 | 1.00 |",
    ]
    for name, h in cold["handlers"].items():
        if "first_record" in h:
            out.append(
                f"| {name} | {_ms(h['init']['min_ms'])} | {_ms(h['init']['median_ms'])} | {_ms(h['first_record']['min_ms'])} | "
                f"{_ms(h['first_record']['median_ms'])} | {_ms(h['first_record_ms'])} | {h['init_ratio']:.2f} | {h['ratio']:.2f} |"
            )
        else:
            out.append(
                f"| {name} (init only) | {_ms(h['init']['min_ms'])} | {_ms(h['init']['median_ms'])} | | | | {h['init_ratio']:.2f} | |"
            )
    where = f"{cold.get('importtime_configuration', '?')} configuration, least total of {IMPORTTIME_RUNS} runs"
    out += ["", f"## Where the time goes (`python -X importtime -c 'import app'`, {where})\n"]
    out += ["| module | import total ms | module body ms | largest direct imports (ms) | most self time by package (ms) |"]
    out += ["|---|---:|---:|---|---|"]
    for name, w in cold.get("importtime", {}).items():
        if not w:
            continue
        direct = ", ".join(f"{m} {v:.0f}" for m, v in w["direct_ms"].items())
        packages = ", ".join(f"{m} {v:.0f}" for m, v in w["packages_self_ms"].items())
        out.append(f"| {name} | {w['total_ms']:.0f} | {w['self_ms']:.0f} | {direct} | {packages} |")
    b = budget(cold)
    worst = cold["worst"].split("/")[-1]
    w, f = cold.get("importtime", {}).get(worst) or {}, cold.get("importtime", {}).get("floor") or {}
    if w:
        imported = ", ".join(f"{m} {v:.0f} ms" for m, v in w.get("above_floor_ms", {}).items())
        out += [
            "",
            f"## Against the target\n\n≤ {cold['target']} x the floor + request allows {b['allowed_ms']:.0f} ms above "
            f"it; {cold['worst']} spends {b['spent_ms']:.0f} ms above it (min of each). Its first record takes "
            f"{b['first_record_ms']:.0f} ms (the floor's request {b['floor_request_ms']:.0f} ms). `import app` ({worst}) "
            f"beyond the floor's imports, by package (self time, importtime): {imported}; the module body (settings, "
            f"media map, clients) {w['self_ms']:.0f} ms against the floor's ({FLOOR.split('; ')[1]}) "
            f"{f.get('self_ms', 0):.0f} ms.",
        ]
    out += [
        "",
        "The module body (`self`) of a handler builds its StepRunner: the settings read (and, deployed, the SSM "
        "parameter and the secret fetched), the media map parsed, the S3 client built. The first record adds the "
        "database connection, the step's S3 and SQL requests and the first use of whatever was imported lazily.",
        "",
    ]
    return "\n".join(out)


# -- the measurement ------------------------------------------------------------------------------------------------------


def _run_child(code: str, args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> tuple[float, float, str]:
    """(init ms, init + first ms, the child's answer), each from the moment before the child was started."""
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=dict(env), capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("COLD ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"child failed in {cwd} ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    _, _t1, t2, t3, answer = line.split(" ", 4)
    return (float(t2) - t0) * 1000, (float(t3) - t0) * 1000, answer


class Stack:
    """The moto server, PostgreSQL, buckets, tables, SSM parameter and secret the children run on."""

    def __init__(self, state: Path) -> None:
        from mediacanon.local import embedded

        self.state = state
        # the layer as `sam build` makes it (layers/core/Makefile's layer-code), mounted as Lambda mounts it (/opt/python)
        self.layer = state / "layer"
        make = ["make", "-s", "-C", str(REPO / "layers" / "core"), "layer-code", f"ARTIFACTS_DIR={self.layer}"]
        subprocess.run([*make, f"PYTHON={sys.executable}"], check=True)
        self.db: Any = None
        self.moto_url, self.moto_pid = embedded.start_moto(state / "moto")
        self.pg_dir = state / "pg"
        try:  # the servers stopped again when anything after their start fails
            self._provision(embedded.start_postgres(self.pg_dir, repo=REPO))
        except BaseException:
            self.close()
            raise

    def _provision(self, pg_url: str) -> None:
        import boto3
        import psycopg
        import yaml
        from psycopg import sql
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        suffix = uuid.uuid4().hex[:8]
        dbname = f"cold_{suffix}"
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        self.conninfo = make_conninfo(pg_url, dbname=dbname)
        self.db = psycopg.connect(self.conninfo, autocommit=True)
        self.db.execute(
            "CREATE TABLE archive_publicationsource (id serial PRIMARY KEY, slug varchar(50) UNIQUE NOT NULL, "
            "name varchar(200) NOT NULL DEFAULT '', icon varchar(100), masthead varchar(100))"
        )
        self.db.execute(
            "CREATE TABLE tenants_tenantpublication (id serial PRIMARY KEY, tenant varchar(50) NOT NULL, "
            "slug varchar(50) NOT NULL, icon varchar(100), UNIQUE (tenant, slug))"
        )
        self.primary, self.cdn, legacy = f"cold-{suffix}-media", f"cold-{suffix}-cdn", f"cold-{suffix}-legacy"
        # the sample project's media map (three fields, two tables), on this run's buckets
        data = yaml.safe_load((REPO / "sample" / "mediamap.yaml").read_text(encoding="utf-8"))
        data["buckets"] = {"primary": self.primary, "cdn": self.cdn, "fallbacks": [legacy]}
        text = yaml.safe_dump(data, sort_keys=False)
        self.config = self.state / "mediamap.yaml"
        self.config.write_text(text, encoding="utf-8")
        kw: dict[str, Any] = {"endpoint_url": self.moto_url, "region_name": REGION}
        self.s3 = boto3.client("s3", **kw)
        for bucket in (self.primary, self.cdn, legacy):
            self.s3.create_bucket(Bucket=bucket)
            self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.s3.put_object(Bucket=self.primary, Key="floor/probe", Body=b"probe")
        self.parameter = f"/cold-{suffix}/media-map"
        boto3.client("ssm", **kw).put_parameter(Name=self.parameter, Value=text, Type="String")
        parts = conninfo_to_dict(self.conninfo)
        secret = {
            "username": parts.get("user", "postgres"),
            "password": parts.get("password", ""),
            "host": parts.get("host", "127.0.0.1"),
            "port": int(str(parts.get("port", 5432))),
            "dbname": dbname,
        }
        self.secret_arn = boto3.client("secretsmanager", **kw).create_secret(
            Name=f"cold-{suffix}-db", SecretString=json.dumps(secret)
        )["ARN"]

    def env(self, configuration: str, handler: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIACANON_", "POWERTOOLS_"))}
        env.pop("DATABASE_URL", None)
        env |= {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.moto_url,
            "PYTHONPATH": str(self.layer / "python"),
            "PYTHONDONTWRITEBYTECODE": "1",  # Lambda's code and layers are read-only: no .pyc is written there
        }
        if handler is None:
            return env
        env |= {  # template.yaml's Globals
            "AWS_LAMBDA_FUNCTION_NAME": f"mediacanon-{handler}",
            "POWERTOOLS_SERVICE_NAME": "mediacanon",
            "POWERTOOLS_METRICS_NAMESPACE": "mediacanon",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "LOG_LEVEL": "INFO",
        }
        if configuration == "deployed":
            env |= {"MEDIACANON_MEDIA_MAP_PARAMETER": self.parameter, "MEDIACANON_DB_SECRET_ARN": self.secret_arn}
        else:
            env |= {"MEDIACANON_CONFIG": str(self.config), "DATABASE_URL": self.conninfo}
        return env

    def prepare(self, slug: str) -> None:
        """A messy upload and its row, as Django leaves them: what the round's normalize, replicate and link settle."""
        key = f"icons/{slug}_icon_v2_final.png"
        self.s3.put_object(Bucket=self.primary, Key=key, Body=f"icon of {slug}".encode(), ContentType="image/png")
        self.db.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, key))

    def record(self, handler: str, slug: str) -> dict[str, Any]:
        """One SQS record (the EventBridge rule's target) wrapping the S3 "Object Created" event the handler receives."""
        bucket, key = {
            "normalize": (self.primary, f"icons/{slug}_icon_v2_final.png"),
            "replicate": (self.primary, f"icons/{slug}.png"),
            "link": (self.cdn, f"icons/{slug}.png"),
        }[handler]
        head = self.s3.head_object(Bucket=bucket, Key=key)
        detail = {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": head["ContentLength"], "etag": head["ETag"].strip('"'),
                       "version-id": head.get("VersionId"), "sequencer": f"{time.time_ns():020X}"},
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": "111122223333",
            "reason": "PutObject" if handler == "normalize" else "CopyObject",
        }  # fmt: skip
        body = {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
            "account": "111122223333", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": REGION,
            "resources": [f"arn:aws:s3:::{bucket}"], "detail": detail,
        }  # fmt: skip
        now = str(int(time.time() * 1000))
        return {
            "Records": [
                {
                    "messageId": str(uuid.uuid4()),
                    "receiptHandle": uuid.uuid4().hex,
                    "body": json.dumps(body),
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": now,
                        "SenderId": "AIDAEXAMPLE",
                        "ApproximateFirstReceiveTimestamp": now,
                    },
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": f"arn:aws:sqs:{REGION}:111122223333:mediacanon-{handler}",
                    "awsRegion": REGION,
                }
            ]
        }

    def check(self, slug: str) -> None:
        """After a round: the row names the canonical key, which both buckets hold, and the messy key is gone."""
        row = self.db.execute("SELECT icon FROM archive_publicationsource WHERE slug = %s", (slug,)).fetchone()
        canonical = f"icons/{slug}.png"
        if row != (canonical,):
            raise RuntimeError(f"round {slug}: the row holds {row}, not {canonical}")
        for bucket in (self.primary, self.cdn):
            self.s3.head_object(Bucket=bucket, Key=canonical)
        if self.s3.list_objects_v2(Bucket=self.primary, Prefix=f"icons/{slug}_icon").get("KeyCount"):
            raise RuntimeError(f"round {slug}: the messy key was not retired")

    def close(self) -> None:
        from mediacanon.local import embedded

        if self.db is not None:
            self.db.close()
        embedded.stop_moto(self.moto_pid)
        embedded.stop_postgres(self.pg_dir, repo=REPO)


def _outcome(stdout_answer: str) -> None:
    answer = json.loads(stdout_answer)
    if answer != {"batchItemFailures": []}:
        raise RuntimeError(f"the record failed: {answer}")


def _importtime(root: str, cwd: Path, env: Mapping[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-X", "importtime", "-c", f"import {root}"]
    found = []
    for _ in range(IMPORTTIME_RUNS):
        done = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, check=True)
        found.append(where_time_goes(done.stderr, root=root))
    return min(found, key=lambda w: w.get("total_ms", 0.0))


def where_it_goes(stack: Stack, state: Path, configuration: str) -> dict[str, Any]:
    """-X importtime of each handler's `import app` and of the floor, the least total of IMPORTTIME_RUNS runs each."""
    importtime = {}
    for handler in (*HANDLERS, "backfill"):
        env = stack.env(configuration if handler != "backfill" else "file", handler)
        importtime[handler] = _importtime("app", REPO / "functions" / handler, env)
    floor_dir = state / "floor"  # the floor as a module of its own, so importtime names it (its body: the client)
    floor_dir.mkdir(exist_ok=True)
    (floor_dir / "floor.py").write_text(FLOOR + "\n", encoding="utf-8")
    importtime["floor"] = _importtime("floor", floor_dir, stack.env("file", None))
    for name, where in importtime.items():
        if name != "floor" and where and importtime["floor"]:
            where["above_floor_ms"] = above_floor(where, importtime["floor"])
    for where in importtime.values():
        where.pop("all_packages_self_ms", None)
    return importtime


def measure(runs: int, configurations: Sequence[str]) -> dict[str, Any]:
    import shutil

    state = BENCH / ".work" / f"cold-{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    stack = Stack(state)
    samples: dict[str, dict[str, list[float]]] = {"floor": {"init": [], "first_record": []}}
    try:
        floor_args = (stack.primary, "floor/probe")
        # one unmeasured round first: byte-compiled files written, the OS's file cache warm
        for round_no in range(runs + 1):
            measured = round_no > 0
            init, first, _ = _run_child(FLOOR_CHILD, floor_args, REPO, stack.env("file", None))
            if measured:
                samples["floor"]["init"].append(init)
                samples["floor"]["first_record"].append(first)
            for configuration in configurations:
                slug = f"r{round_no}{configuration[0]}{uuid.uuid4().hex[:6]}"
                stack.prepare(slug)
                for handler in HANDLERS:
                    event = json.dumps(stack.record(handler, slug))
                    cwd = REPO / "functions" / handler
                    env = stack.env(configuration, handler)
                    init, first, answer = _run_child(HANDLER_CHILD, (event, f"mediacanon-{handler}"), cwd, env)
                    _outcome(answer)
                    if measured:
                        entry = samples.setdefault(f"{configuration}/{handler}", {"init": [], "first_record": []})
                        entry["init"].append(init)
                        entry["first_record"].append(first)
                stack.check(slug)
            # the backfill's task handler: init only (its tasks are Step Functions payloads, not one SQS record)
            init, _, _ = _run_child(INIT_CHILD, (), REPO / "functions" / "backfill", stack.env("file", "backfill"))
            if measured:
                samples.setdefault("file/backfill", {"init": [], "first_record": []})["init"].append(init)
            print(f"  round {round_no}{'' if measured else ' (warm-up, not counted)'} done", file=sys.stderr, flush=True)
        importtime = where_it_goes(stack, state, configurations[0])
    finally:
        stack.close()
        shutil.rmtree(state, ignore_errors=True)
    cold = summarize(samples)
    cold["importtime"] = importtime
    cold["importtime_configuration"] = configurations[0]
    cold["runs"] = runs
    cold["samples_ms"] = {n: {s: [round(v, 1) for v in vs] for s, vs in st.items()} for n, st in samples.items()}
    cold["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cold["python"] = sys.version.split()[0]
    cold["floor_code"] = FLOOR
    return cold


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7, help="measured rounds (fresh interpreters per entry)")
    parser.add_argument("--configurations", nargs="*", default=list(CONFIGURATIONS), choices=CONFIGURATIONS)
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave RESULTS.json alone")
    opts = parser.parse_args()
    sys.path.insert(0, str(REPO / "layers" / "core"))
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)  # noqa: S106
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    cold = measure(opts.runs, opts.configurations)
    print(markdown(cold))
    if opts.no_write:
        return
    results = json.loads(RESULTS_JSON.read_text(encoding="utf-8")) if RESULTS_JSON.exists() else {}
    RESULTS_JSON.write_text(json.dumps(merge(results, cold), indent=1, default=str) + "\n", encoding="utf-8")
    COLD_MD.parent.mkdir(parents=True, exist_ok=True)
    COLD_MD.write_text(markdown(cold), encoding="utf-8")
    written = json.loads(RESULTS_JSON.read_text(encoding="utf-8")).get("live") or {}
    if "phases" in written:  # results/live.md's targets include the cold start
        sys.path.insert(0, str(BENCH))
        from live import render

        render(written)
    if RESULTS_MD.exists() and "results/cold-start.md" not in RESULTS_MD.read_text(encoding="utf-8"):
        with RESULTS_MD.open("a", encoding="utf-8") as f:  # bench.py regenerates RESULTS.md; the link goes back on
            f.write(LINK)


if __name__ == "__main__":
    main()
