"""mediacanon from the side of its users: a real Django project (tests/acceptance/django_site: its own settings,
the sample's archive app and migrations, django-storages' S3 backend with the CDN's domain for URLs) saves its
files on the session's AWS emulator (moto; LocalStack with --emulator=localstack) and PostgreSQL; the live path of
template.yaml settles them (the real handlers in this process, as tests/integration/test_live_path.py runs them);
Django then only ever sees clean names that exist in both buckets and URLs that serve the bytes it saved.

Django runs in its own process (`manage.py drive`, started by the `site` fixture), so its settings never reach
this one, and the model instances it holds live on while mediacanon renames their files, as in a running site.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import boto3
import psycopg
import pytest
import yaml
from PIL import Image

from mediacanon.core import mediamap
from mediacanon.local import localrun
from mediacanon.local.localrun import LocalStack, RunReport
from mediacanon.steps import Outcome

pytestmark = pytest.mark.acceptance

REPO = Path(__file__).resolve().parents[2]
MANAGE = REPO / "tests" / "acceptance" / "django_site" / "manage.py"
TEMPLATE = REPO / "template.yaml"
SAMPLE_MAP = REPO / "sample" / "mediamap.yaml"
MEDIACANON = Path(sys.executable).with_name("mediacanon")  # the CLI of the environment running the tests
ANSWER_TIMEOUT = 60.0  # seconds Django may take to answer one request


def image(fmt: str, color: tuple[int, int, int]) -> bytes:
    """A small real image, as an ImageField's form accepts (the color makes every file's bytes its own)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, format=fmt)
    return buffer.getvalue()


class DjangoError(AssertionError):
    """The site answered with a traceback, or not at all."""


@dataclass
class Site:
    """The running Django site, the live path that serves it, and where both keep their state."""

    media_map: mediamap.MediaMap
    config: Path
    conninfo: str
    env: dict[str, str]
    stack: LocalStack
    cdn_url: str
    workdir: Path
    emulator: str
    process: subprocess.Popen[bytes] | None = None
    _pending: bytes = field(default=b"", repr=False)

    @property
    def primary(self) -> str:
        return self.media_map.buckets.primary

    @property
    def cdn(self) -> str:
        return self.media_map.buckets.cdn

    @property
    def stderr(self) -> Path:
        return self.workdir / "django.stderr"

    def start(self, **settings: str) -> None:
        """Start the site (`manage.py drive`); `settings` add to its environment (e.g. MEDIASITE_MEDIA_ROOT)."""
        assert self.process is None, "the site is running"
        with self.stderr.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(MANAGE), "drive"],
                env={**self.env, **settings},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._pending = b""

    def stop(self) -> None:
        """Stop the site as a deploy does: its held instances and connections go with the process."""
        if self.process is None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def django(self, op: str, **args: Any) -> Any:
        """One request to the site; its answer, or the site's traceback as the test's failure."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self.process.stdin.flush()
        deadline = time.monotonic() + ANSWER_TIMEOUT
        fd = self.process.stdout.fileno()
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DjangoError(f"Django did not answer {op!r} within {ANSWER_TIMEOUT:.0f}s:\n{self.stderr.read_text()}")
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise DjangoError(f"Django exited ({self.process.wait()}) on {op!r}:\n{self.stderr.read_text()}")
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        answer = json.loads(line)
        if not answer["ok"]:
            raise DjangoError(f"Django failed {op!r} {args if op != 'save' else args['filename']!r}:\n{answer['error']}")
        return answer["result"]

    def save(self, slug: str, field: str, filename: str, body: bytes) -> dict[str, Any]:
        answer = self.django("save", slug=slug, field=field, filename=filename, content=base64.b64encode(body).decode())
        return cast(dict[str, Any], answer)

    def read(self, name: str, storage: str = "default") -> bytes:
        return base64.b64decode(self.django("read", name=name, storage=storage))

    def settle(self) -> RunReport:
        """The live path until idle: the handlers of template.yaml on its queues, as `mediacanon local run` does."""
        return localrun.run(self.stack, config=self.config, database_url=self.conninfo, progress=False, timeout=60)

    def mediacanon(self, *args: str) -> str:
        """The mediacanon CLI as a user runs it, pointed at this site's endpoints and media map."""
        env = {**os.environ, "MEDIACANON_CONFIG": str(self.config), "DATABASE_URL": self.conninfo}
        env["AWS_ENDPOINT_URL"] = self.env["AWS_ENDPOINT_URL"]
        proc = subprocess.run(
            [str(MEDIACANON), *args], env=env, cwd=self.config.parent, capture_output=True, text=True, timeout=300, check=False
        )
        assert proc.returncode == 0, f"mediacanon {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def database_now(self) -> datetime:
        with psycopg.connect(self.conninfo) as conn:
            row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        return cast(datetime, row[0])


def fetch(url: str) -> tuple[int, bytes]:
    """The URL fetched as a browser would: no credentials (the emulator serves path-style GETs as S3 serves a public
    CDN: neither moto nor LocalStack checks the fixture's public-read bucket policy, they serve anyone)."""
    assert url.startswith("http://127.0.0.1:"), url  # only ever the session's own emulator
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - a local http URL, checked above
            return response.status, bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def http_get(url: str) -> bytes:
    status, body = fetch(url)
    assert status == 200, (url, status)
    return body


def http_status(url: str) -> int:
    return fetch(url)[0]


def nonzero_counts(output: str, head: str) -> dict[str, int]:
    """The counts of a CLI's summary line (``HEAD | name=N ...``) that are not zero."""
    line = next((line for line in output.splitlines() if line.startswith(f"{head} | ")), None)
    assert line is not None, f"no {head!r} line in:\n{output}"
    return {name: int(n) for name, n in re.findall(r"([\w-]+)=(\d+)", line) if int(n)}


def media_map_for(tag: str, tmp_path: Path, policies: dict[str, str] | None = None) -> tuple[mediamap.MediaMap, Path]:
    """The sample's media map, on buckets of this test's own (and with `policies` overriding its defaults)."""
    data = yaml.safe_load(SAMPLE_MAP.read_text(encoding="utf-8"))
    data["buckets"] = {"primary": f"site-media-{tag}", "cdn": f"site-cdn-{tag}", "fallbacks": [f"site-legacy-{tag}"]}
    data["defaults"]["policies"].update(policies or {})
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return mediamap.parse(data, source=str(config)), config


def manage(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, str(MANAGE), *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def site(request: pytest.FixtureRequest, aws_endpoint: str, emulator: str, db_conninfo: str, tmp_path: Path) -> Iterator[Site]:
    """A fresh stack (buckets, queues and rules of template.yaml), a fresh database migrated by Django, and the
    Django site running against both. Parametrize indirectly with a dict of media-map policies to override."""
    tag = uuid.uuid4().hex[:8]
    media_map, config = media_map_for(tag, tmp_path, getattr(request, "param", None))
    stack = localrun.provision_media_map(media_map, TEMPLATE, endpoint_url=aws_endpoint, stack_name=f"site-{tag}")
    # The CDN's read access, which template.yaml leaves to whoever sets the CDN up (a CloudFront origin access
    # control): the emulators have no CloudFront, so the CDN is the bucket's path-style URL, readable by anyone.
    cdn_url = f"{aws_endpoint}/{media_map.buckets.cdn}"
    public_read = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{media_map.buckets.cdn}/*"}
        ],
    }
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    s3.put_bucket_policy(Bucket=media_map.buckets.cdn, Policy=json.dumps(public_read))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MEDIACANON_", "MEDIASITE_"))}
    env.update(
        DATABASE_URL=db_conninfo,
        AWS_ENDPOINT_URL=aws_endpoint,
        MEDIASITE_PRIMARY_BUCKET=media_map.buckets.primary,
        MEDIASITE_CDN_BUCKET=media_map.buckets.cdn,
        MEDIASITE_CDN_URL=cdn_url,
        PYTHONIOENCODING="utf-8",
    )
    manage(env, "migrate", "--verbosity", "0")
    site = Site(media_map, config, db_conninfo, env, stack, cdn_url, tmp_path, emulator)
    site.start()
    try:
        yield site
    finally:
        site.stop()
        localrun.shutdown()  # closes the handlers' database connection before the test database is dropped


# What the site's editors upload, by (slug, field): the file name their browser sent and the bytes. Each is a mess
# mediacanon must clean up; the comment says which.
UPLOADS = {
    ("nytimes", "icon"): ("NYTimes Icon v2 FINAL.png", image("PNG", (10, 20, 30))),  # noise tokens, a space
    ("nytimes", "masthead"): ("NYTimes_Masthead_FINAL (1).JPG", image("JPEG", (200, 10, 10))),  # " (1)", .JPG
    ("sueddeutsche-zeitung", "icon"): ("Süddeutsche Zeitung_logo.png", image("PNG", (0, 90, 0))),  # unicode
    ("the-times", "icon"): ("times_logo.ico", image("ICO", (180, 0, 0))),  # the name's slug is not the row's
    ("times-of-india", "icon"): ("times_logo.ico", image("ICO", (255, 128, 0))),  # taken: Django's suffix
}
CANONICAL = {
    ("nytimes", "icon"): "icons/nytimes.png",
    ("nytimes", "masthead"): "mastheads/nytimes.jpg",
    ("sueddeutsche-zeitung", "icon"): "icons/sueddeutsche-zeitung.png",
    ("the-times", "icon"): "icons/the-times.ico",
    ("times-of-india", "icon"): "icons/times-of-india.ico",
}


def upload_all(site: Site) -> dict[tuple[str, str], str]:
    """Every UPLOADS file saved through its ImageField; returns the names Django stored."""
    stored = {}
    for (slug, column), (filename, body) in UPLOADS.items():
        stored[slug, column] = site.save(slug, column, filename, body)[column]["name"]
    return stored


def assert_stored_the_mess(stored: dict[tuple[str, str], str]) -> None:
    """What Django stored is the mess: its own name cleaning, its collision suffix, unicode."""
    assert stored["nytimes", "icon"] == "icons/NYTimes_Icon_v2_FINAL.png"
    assert stored["nytimes", "masthead"] == "mastheads/NYTimes_Masthead_FINAL_1.JPG"
    assert stored["sueddeutsche-zeitung", "icon"] == "icons/Süddeutsche_Zeitung_logo.png"
    assert stored["the-times", "icon"] == "icons/times_logo.ico"
    suffixed = stored["times-of-india", "icon"]
    assert re.fullmatch(r"icons/times_logo_[A-Za-z0-9]{7}\.ico", suffixed), suffixed


def assert_settled(site: Site, stored: dict[tuple[str, str], str], *, op: str) -> None:
    """The end state, from Django's side: every row names its canonical key, both buckets hold it and nothing
    else, its URL serves the uploaded bytes. `op` is how the site gets each row: "refresh" (an instance it has
    held since the upload) or "load" (a process that started after the move)."""
    for (slug, column), canonical in CANONICAL.items():
        seen = site.django(op, slug=slug)[column]
        url = f"{site.cdn_url}/{canonical}"
        assert seen == {"name": canonical, "exists": True, "cdn_exists": True, "url": url}, (slug, column)
        body = UPLOADS[slug, column][1]
        assert http_get(url) == body  # the CDN URL serves the bytes the editor uploaded
        assert site.read(canonical) == body
        assert not site.django("exists", name=stored[slug, column])  # the messy key retired: no row references it
    # both buckets hold exactly the canonical names, as Django's storages list them
    for storage in ("default", "cdn"):
        icons = ["nytimes.png", "sueddeutsche-zeitung.png", "the-times.ico", "times-of-india.ico"]
        assert site.django("listdir", path="icons", storage=storage) == {"dirs": [], "files": icons}
        assert site.django("listdir", path="mastheads", storage=storage) == {"dirs": [], "files": ["nytimes.jpg"]}
    assert site.django("listdir", path="", storage="cdn") == {"dirs": ["icons", "mastheads"], "files": []}
    verified = site.mediacanon("verify")  # and mediacanon agrees: I1 and I3 hold, nothing pending, no orphan
    # (the primary bucket also holds a backfill's reports, under mediacanon-reports/)
    assert re.search(r"^VERIFY \| ok \| primary_objects=\d+ cdn_objects=5 ", verified, re.M), verified
    assert re.search(r"^pending rename: 0$", verified, re.M) and re.search(r"^orphans: 0$", verified, re.M), verified


def test_the_site_runs_the_django_of_this_environment(site: Site) -> None:
    import django

    # `make acceptance-django6` runs this module under Django 6: the site must be running that Django, not another
    assert site.django("version") == django.get_version()


def test_messy_uploads_settle_to_canonical_names_that_django_serves_from_the_cdn(site: Site) -> None:
    stored = upload_all(site)
    assert_stored_the_mess(stored)

    report = site.settle()

    assert report.line == "DONE | normalized=5 mirrored=5 linked=5 retired=5 refused=0 failed=0", report
    assert (report.failed_records, report.errors) == (0, [])
    assert_settled(site, stored, op="refresh")  # the instances Django held all along, refreshed
    # a Django process started now (a new worker, a deploy) reads the same clean state from the database
    site.stop()
    site.start()
    assert_settled(site, stored, op="load")


def test_a_generic_name_is_named_from_the_row_that_references_it(site: Site) -> None:
    body = image("ICO", (180, 0, 0))
    assert site.save("bbc", "icon", "favicon.ico", body)["icon"]["name"] == "icons/favicon.ico"
    # before the live path runs, the plan and verify agree that the row's name is due
    planned = json.loads(site.mediacanon("plan", "--json"))["items"]
    assert [(i["key"], i["action"], i["canonical_key"]) for i in planned] == [("icons/favicon.ico", "rename", "icons/bbc.ico")]
    assert re.search(r"^pending rename: 1  e\.g\. icons/favicon\.ico$", site.mediacanon("verify"), re.M)

    report = site.settle()

    # the generic name is never mirrored: the CDN only ever holds the name the row gives it (I3)
    assert report.line == "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=0", report
    assert (report.failed_records, report.errors) == (0, [])
    seen = site.django("refresh", slug="bbc")["icon"]
    assert seen == {"name": "icons/bbc.ico", "exists": True, "cdn_exists": True, "url": f"{site.cdn_url}/icons/bbc.ico"}
    assert http_get(seen["url"]) == body
    only = {"dirs": [], "files": ["bbc.ico"]}
    assert site.django("listdir", path="icons") == site.django("listdir", path="icons", storage="cdn") == only
    verified = site.mediacanon("verify")
    assert re.search(r"^pending rename: 0$", verified, re.M) and re.search(r"^orphans: 0$", verified, re.M), verified


def test_saving_a_new_file_for_the_same_row_replaces_it_under_the_same_name_in_both_buckets(site: Site) -> None:
    first, second = image("PNG", (1, 2, 3)), image("PNG", (250, 250, 0))
    site.save("guardian", "icon", "guardian_icon.png", first)
    assert site.settle().line == "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=0"
    assert site.django("refresh", slug="guardian")["icon"]["name"] == "icons/guardian.png"

    # the editor uploads a new icon for the row Django holds: file_overwrite=False gives it a name of its own
    resaved = site.save("guardian", "icon", "Guardian icon 2027 (new).png", second)["icon"]["name"]
    assert resaved == "icons/Guardian_icon_2027_new.png"
    report = site.settle()

    # the row's new file is authoritative: it replaces the canonical object, and the CDN copy follows
    assert report.line == "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=0", report
    seen = site.django("refresh", slug="guardian")["icon"]
    assert seen == {"name": "icons/guardian.png", "exists": True, "cdn_exists": True, "url": f"{site.cdn_url}/icons/guardian.png"}
    assert http_get(seen["url"]) == site.read("icons/guardian.png") == site.read("icons/guardian.png", "cdn") == second
    assert not site.django("exists", name=resaved)
    only = {"dirs": [], "files": ["guardian.png"]}
    assert site.django("listdir", path="icons") == site.django("listdir", path="icons", storage="cdn") == only
    # nothing lost (I5): the first icon's bytes are still a version of the canonical key in the versioned bucket
    s3 = boto3.client("s3", endpoint_url=site.env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    versions = s3.list_object_versions(Bucket=site.primary, Prefix="icons/guardian.png")["Versions"]
    bodies = {s3.get_object(Bucket=site.primary, Key=v["Key"], VersionId=v["VersionId"])["Body"].read() for v in versions}
    assert bodies == {first, second}


@pytest.mark.parametrize(
    ("site", "cdn_keeps_it"),
    [({}, False), ({"mirror_deletes": "report"}, True)],  # the sample's policy (delete), then the other one
    ids=["mirror_deletes=delete", "mirror_deletes=report"],
    indirect=["site"],
)
def test_deleting_a_file_through_django_follows_the_mirror_policy(site: Site, cdn_keeps_it: bool) -> None:
    site.save("bbc", "icon", "BBC_logo.png", image("PNG", (90, 0, 0)))
    site.save("reuters", "icon", "reuters-icon.png", image("PNG", (0, 0, 90)))
    assert site.settle().line == "DONE | normalized=2 mirrored=2 linked=2 retired=2 refused=0 failed=0"
    url = site.django("refresh", slug="bbc")["icon"]["url"]
    assert http_status(url) == 200

    gone = site.django("delete_file", slug="bbc", field="icon")["icon"]
    assert gone["name"] is None  # Django cleared the column and deleted the object from the primary bucket
    assert not site.django("exists", name="icons/bbc.png")
    # the delete marker's "Object Deleted" event reaches the replicate queue by itself: S3 and LocalStack send it, and
    # so does the project's moto server (mediacanon.local.motoserver), where moto alone would not
    report = site.settle()

    assert report.count(Outcome.UNMIRRORED) == (0 if cdn_keeps_it else 1), report
    assert (report.failed_records, report.errors) == (0, [])
    assert site.django("exists", name="icons/bbc.png", storage="cdn") is cdn_keeps_it
    assert http_status(url) == (200 if cdn_keeps_it else 404)  # the URL that pages rendered before still carry
    assert site.django("refresh", slug="bbc")["icon"]["name"] == ""  # how Django stores a FileField without a file
    # the other row is untouched, in both buckets
    other = site.django("refresh", slug="reuters")["icon"]
    assert (other["name"], other["exists"], other["cdn_exists"]) == ("icons/reuters.png", True, True)


@pytest.mark.parametrize("renamed_by", ["live path", "backfill"])
def test_a_rollback_leaves_django_reading_the_old_names_and_every_one_resolves(site: Site, renamed_by: str) -> None:
    since = site.database_now()  # the ledger's clock: its rows are stamped with the database's now()
    stored = upload_all(site)
    if renamed_by == "live path":
        assert site.settle().line == "DONE | normalized=5 mirrored=5 linked=5 retired=5 refused=0 failed=0"
        undo = ["--since", since.isoformat()]
    else:  # the uploads' events are left in the queues: the backfill alone renames
        backfilled = site.mediacanon("backfill")
        assert nonzero_counts(backfilled, "DONE") == {"migrated": 5}, backfilled
        found = re.search(r"^execution: arn:\S*:([^:\s]+)\s+status: SUCCEEDED", backfilled, re.M)
        assert found, backfilled
        undo = [found.group(1)]  # the execution's name, as the ledger records it
    assert {(s, c): site.django("refresh", slug=s)[c]["name"] for s, c in CANONICAL} == CANONICAL

    # (the live path does not run after this: on a deployed stack its queues are paused for a rollback, or it would
    # rename the restored names again; see mediacanon.rollback)
    out = site.mediacanon("rollback", *undo)

    assert "ROLLBACK | entries=5 objects_restored=5 rows_restored=5 rows_changed_since=0" in out, out
    for (slug, column), old in stored.items():
        seen = site.django("refresh", slug=slug)[column]
        assert (seen["name"], seen["exists"]) == (old, True), (slug, column)  # the old name, and it resolves
        assert site.read(old) == UPLOADS[slug, column][1]  # with the bytes Django saved under it
    # the canonical objects stay (I2: rollback deletes nothing), so links already handed out keep working
    for canonical in CANONICAL.values():
        assert site.django("exists", name=canonical) and site.django("exists", name=canonical, storage="cdn")


def test_a_site_whose_media_sat_in_media_root_moves_to_s3_and_ends_in_the_same_state(site: Site, tmp_path: Path) -> None:
    # before the move: the same site on Django's FileSystemStorage, the editors' files under MEDIA_ROOT
    media_root = tmp_path / "media"
    site.stop()
    site.start(MEDIASITE_MEDIA_ROOT=str(media_root))
    stored = upload_all(site)
    assert_stored_the_mess(stored)  # FileSystemStorage names files exactly as django-storages does
    assert all((media_root / name).is_file() for name in stored.values())
    site.stop()

    # the move, as a user runs it: the files the rows name go up under those names, then a backfill
    uploaded = site.mediacanon("upload", "--from-media-root", str(media_root))
    assert nonzero_counts(uploaded, "UPLOAD") == {"uploaded": 5}, uploaded
    backfilled = site.mediacanon("backfill")
    assert nonzero_counts(backfilled, "DONE") == {"migrated": 5}, backfilled  # renamed, mirrored, relinked

    # the live path meanwhile received the uploads' events: handled late, after the backfill, they change nothing
    report = site.settle()
    assert report.line == "DONE | normalized=0 mirrored=0 linked=0 retired=0 refused=0 failed=0", report
    assert (report.failed_records, report.errors) == (0, [])

    # after the move: the site on S3 (the fixture's settings) reads what the S3 upload scenario ends with
    site.start()
    assert_settled(site, stored, op="load")
