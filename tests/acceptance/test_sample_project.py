"""The sample "Global Publication Archive" Django project, run as its users run it: `manage.py migrate` and
`manage.py generate_archive` as subprocesses against the session's AWS emulator and PostgreSQL. The files are
checked in S3, the rows through the Django ORM, and every messy key against mediacanon's naming core."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import boto3
import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg import sql
from psycopg.conninfo import make_conninfo
from support.helpers import canonical_for_slug

from mediacanon.core import mediamap, naming
from mediacanon.core.errors import UnsafeKeyError

pytestmark = pytest.mark.acceptance

REPO = Path(__file__).resolve().parents[2]
MANAGE = REPO / "sample" / "manage.py"
MEDIA_MAP = REPO / "sample" / "mediamap.yaml"
COUNT = 60
SEED = 42

# The kinds whose name alone resolves to the canonical key of the owning row's slug.
RESOLVABLE = {
    "canonical",
    "messy-upload",
    "collision-suffix",
    "superseded-upload",
    "staging",
    "linker",
    "missing-legacy",
    "tenant",
}
ALL_KINDS = RESOLVABLE | {
    "dotted-collision-suffix",
    "django-copy-number",
    "non-latin-name",
    "generic-name",
    "missing",
    "orphan",
    "refused",
}
# Django's get_alternative_name: "<root>_<7 random>" + every suffix of the name ("a.b.png" -> "a_XXXXXXX.b.png")
COLLISION = re.compile(r"_[A-Za-z0-9]{7}(\.[^/]+)$")


@dataclass
class Archive:
    env: dict[str, str]
    manifest: dict[str, Any]
    output: str
    s3: Any

    @property
    def objects(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.manifest["objects"])

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        found = [o for o in self.objects if o["kind"] in kinds]
        assert found, f"the generator made no object of kind {kinds}"
        return found

    def bucket(self, role: str) -> str:
        return cast(str, self.manifest["buckets"][role])

    def head(self, role: str, key: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self.s3.head_object(Bucket=self.bucket(role), Key=key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise


def manage(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(MANAGE), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def project_env(conninfo: str, endpoint: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MEDIACANON_"))}
    env.update(
        DATABASE_URL=conninfo,
        AWS_ENDPOINT_URL=endpoint,
        PYTHONIOENCODING="utf-8",
        MEDIACANON_PRIMARY_BUCKET=f"archive-media-{tag}",
        MEDIACANON_LEGACY_BUCKET=f"archive-legacy-{tag}",
        MEDIACANON_CDN_BUCKET=f"archive-cdn-{tag}",
    )
    return env


def generate(env: dict[str, str], manifest_path: Path) -> tuple[dict[str, Any], str]:
    manage(env, "migrate", "--verbosity", "0")
    output = manage(env, "generate_archive", "--count", str(COUNT), "--seed", str(SEED), "--json", str(manifest_path))
    return json.loads(manifest_path.read_text(encoding="utf-8")), output


@pytest.fixture(scope="module")
def archive(database_url: str, aws_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """One generated archive for the module: its own database and its own three buckets."""
    name = f"sample_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        env = project_env(make_conninfo(database_url, dbname=name), aws_endpoint)
        manifest, output = generate(env, tmp_path_factory.mktemp("archive") / "manifest.json")
        yield Archive(env, manifest, output, boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1"))
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def media_map() -> mediamap.MediaMap:
    return mediamap.load(MEDIA_MAP)


@pytest.fixture(scope="module")
def orm_rows(archive: Archive) -> dict[tuple[str | None, str], dict[str, Any]]:
    """The rows as the Django ORM sees them (FieldFile .name and .url), read in a `manage.py shell` subprocess."""
    code = (
        "import json\n"
        "from archive_site.archive.models import PublicationSource\n"
        "from archive_site.tenants.models import TenantPublication\n"
        "def f(ff):\n"
        "    return {'name': ff.name, 'url': ff.url if ff else None}\n"
        "rows = [{'tenant': None, 'slug': p.slug, 'icon': f(p.icon), 'masthead': f(p.masthead)} for p in PublicationSource.objects.all()]\n"
        "rows += [{'tenant': t.tenant, 'slug': t.slug, 'icon': f(t.icon), 'masthead': None} for t in TenantPublication.objects.all()]\n"
        "print('ROWS=' + json.dumps(rows))\n"
    )
    out = manage(archive.env, "shell", "--no-imports", "-c", code)
    line = next(line for line in out.splitlines() if line.startswith("ROWS="))
    return {(r["tenant"], r["slug"]): r for r in json.loads(line.removeprefix("ROWS="))}


def test_every_kind_of_mess_is_made_and_summarised(archive: Archive) -> None:
    counts = Counter(o["kind"] for o in archive.objects)
    assert set(counts) == ALL_KINDS, f"kinds made: {dict(counts)}"
    assert {k for k, info in archive.manifest["kinds"].items() if info["resolvable"]} == RESOLVABLE
    for kind, info in archive.manifest["kinds"].items():
        assert info["objects"] == counts[kind]
        assert re.search(rf"[│|] {re.escape(kind)} +[│|] +{counts[kind]} [│|]", archive.output), f"{kind} not in the summary"
    # meaningful numbers, not one token object each
    assert counts["messy-upload"] >= 10 and counts["staging"] >= 5 and counts["linker"] >= 3 and counts["canonical"] >= 5
    assert len([r for r in archive.manifest["rows"] if r["table"] == "archive_publicationsource"]) == COUNT


def test_the_buckets_hold_exactly_the_manifest_objects(archive: Archive) -> None:
    for role in ("primary", "legacy"):
        listed: set[str] = set()
        for page in archive.s3.get_paginator("list_objects_v2").paginate(Bucket=archive.bucket(role)):
            listed.update(o["Key"] for o in page.get("Contents", []))
        assert listed == {o["key"] for o in archive.objects if o["bucket"] == role}
    archive.s3.head_bucket(Bucket=archive.bucket("cdn"))  # created, empty: mediacanon fills it


def test_django_storages_wrote_real_images(archive: Archive) -> None:
    signatures = {".png": b"\x89PNG", ".jpg": b"\xff\xd8", ".jpeg": b"\xff\xd8", ".gif": b"GIF8", ".ico": b"\x00\x00\x01\x00"}
    for obj in archive.of_kind("canonical", "messy-upload", "collision-suffix", "superseded-upload", "non-latin-name", "tenant"):
        head = archive.head("primary", obj["key"])
        assert head is not None, obj
        assert head["ContentLength"] == obj["size"] and head["ETag"].strip('"') == obj["md5"]
        assert head["ContentType"].startswith("image/"), (obj["key"], head["ContentType"])  # django-storages guessed it
        assert 0 < obj["size"] < 8192  # a few KB at most
        body = archive.s3.get_object(Bucket=archive.bucket("primary"), Key=obj["key"])["Body"].read()
        ext = "." + obj["key"].rsplit(".", 1)[-1].lower()
        assert body.startswith(signatures[ext]), obj["key"]


def test_saving_a_taken_name_got_the_django_storages_suffix(archive: Archive) -> None:
    suffixed = archive.of_kind("collision-suffix", "dotted-collision-suffix")
    for obj in suffixed:
        m = COLLISION.search(obj["key"])
        assert m, obj["key"]
        first = obj["key"][: m.start()] + m.group(1)  # the name as uploaded the first time
        superseded = [o for o in archive.of_kind("superseded-upload") if o["key"] == first]
        assert superseded and superseded[0]["slug"] == obj["slug"] and not superseded[0]["referenced"]
        assert archive.head("primary", first) is not None
        assert superseded[0]["md5"] != obj["md5"]  # a new version of the file: other bytes
    assert "icons/lemonde_icon.png" in {o["key"] for o in archive.of_kind("superseded-upload")}
    assert any(
        re.fullmatch(r"icons/Folha_de_S_[A-Za-z0-9]{7}\.Paulo\W.*", o["key"]) for o in archive.of_kind("dotted-collision-suffix")
    )


def test_the_orm_sees_rows_pointing_at_the_messy_keys(
    archive: Archive, orm_rows: dict[tuple[str | None, str], dict[str, Any]]
) -> None:
    primary = archive.bucket("primary")
    referenced = [o for o in archive.objects if o["referenced"]]
    assert len(referenced) >= COUNT // 2
    for obj in referenced:
        row = orm_rows[(obj["tenant"], obj["slug"])]
        column = row[obj["field"].rsplit(".", 1)[-1]]
        if obj["tenant"]:  # django-storages' location is not in the column
            assert column["name"] == obj["key"].removeprefix(obj["tenant"] + "/")
            continue
        assert column["name"] == obj["key"]
        url = urlsplit(column["url"])
        assert unquote(url.path) == f"/{primary}/{obj['key']}" and not url.query  # AWS_QUERYSTRING_AUTH = False
    nytimes = orm_rows[(None, "nytimes")]
    assert nytimes["icon"]["name"] == "icons/nytimes_icon_v2_final.png"
    assert nytimes["masthead"]["name"] == "mastheads/NYTimes_Masthead_FINAL_1.JPG"  # Django's get_valid_name: ' (1)' -> '_1'
    assert orm_rows[(None, "bbc")]["icon"]["name"] == "icons/bbc.ico"
    assert orm_rows[(None, "suddeutsche-zeitung")]["icon"]["name"] == "icons/Süddeutsche_Zeitung_logo.png"


def test_staging_and_linker_rows_have_empty_columns(
    archive: Archive, orm_rows: dict[tuple[str | None, str], dict[str, Any]]
) -> None:
    raw = {(r["tenant"], r["slug"]): r for r in archive.manifest["rows"]}
    empties = set()
    for obj in archive.of_kind("staging", "linker"):
        column = obj["field"].rsplit(".", 1)[-1]
        assert orm_rows[(None, obj["slug"])][column]["name"] in (None, "")
        empties.add(raw[(None, obj["slug"])][column])
        assert archive.head("primary", obj["key"]) is not None
    assert empties == {None, ""}  # NULL and '' both occur
    assert any(o["key"].startswith("downloads/") and "/google_favicon/" in o["key"] for o in archive.of_kind("staging"))


def test_missing_keys_and_the_legacy_fallback(archive: Archive, orm_rows: dict[tuple[str | None, str], dict[str, Any]]) -> None:
    for obj in archive.of_kind("missing", "missing-legacy"):
        row = orm_rows[(obj["tenant"], obj["slug"])]
        value = obj["key"].removeprefix(f"{obj['tenant']}/") if obj["tenant"] else obj["key"]
        assert row[obj["field"].rsplit(".", 1)[-1]]["name"] == value
        assert archive.head("primary", obj["key"]) is None
        in_legacy = archive.head("legacy", obj["key"])
        if obj["kind"] == "missing-legacy":
            assert in_legacy is not None and in_legacy["ETag"].strip('"') == obj["md5"]
        else:
            assert in_legacy is None


def test_messy_keys_resolve_to_the_canonical_key_of_their_row(archive: Archive, media_map: mediamap.MediaMap) -> None:
    checked: Counter[str] = Counter()
    for obj in archive.of_kind(*RESOLVABLE):
        res = naming.resolve(media_map, obj["key"])
        assert res.field.name == obj["field"], (obj["key"], res.rule)
        want = naming.canonical_key_for_row(media_map.field(obj["field"]), obj["slug"], obj["key"], obj["tenant"])
        assert res.canonical_key == want, f"{obj['kind']} {obj['key']!r}: {res.canonical_key!r} != {want!r} ({res.steps})"
        if obj["kind"] != "missing-legacy":  # a legacy copy may have the canonical name already
            assert res.is_canonical == (obj["kind"] == "canonical"), obj["key"]
        checked[obj["kind"]] += 1
    assert set(checked) == RESOLVABLE
    res = naming.resolve(media_map, "icons/nytimes_icon_v2_final.png")
    assert res.canonical_key == "icons/nytimes.png"


def test_names_that_only_the_row_can_name(archive: Archive, media_map: mediamap.MediaMap) -> None:
    for obj in archive.of_kind("non-latin-name"):
        with pytest.raises(UnsafeKeyError):
            naming.resolve(media_map, obj["key"])
        assert naming.canonical_key_for_row(media_map.field(obj["field"]), obj["slug"], obj["key"]).startswith("icons/")
    for obj in archive.of_kind("generic-name"):
        by_row = naming.canonical_key_for_row(media_map.field(obj["field"]), obj["slug"], obj["key"])
        assert naming.resolve(media_map, obj["key"]).canonical_key != by_row  # the name would mislead: the row decides


def test_django_mangled_copy_numbers_resolve(archive: Archive, media_map: mediamap.MediaMap) -> None:
    for obj in archive.of_kind("django-copy-number"):
        want = naming.canonical_key_for_row(media_map.field(obj["field"]), obj["slug"], obj["key"])
        res = naming.resolve(media_map, obj["key"])
        # "Name_FINAL_1": the number follows a noise token, so it is stripped; "Name_2" is ambiguous
        # ("Channel_4"), so the stripped slug is an alternative the owner lookup tries next
        assert want in (res.canonical_key, *(canonical_for_slug(res, s) for s in res.alt_slugs)), obj["key"]


def test_collision_suffix_before_an_inner_dot_resolves(archive: Archive, media_map: mediamap.MediaMap) -> None:
    for obj in archive.of_kind("dotted-collision-suffix"):
        want = naming.canonical_key_for_row(media_map.field(obj["field"]), obj["slug"], obj["key"])
        assert naming.resolve(media_map, obj["key"]).canonical_key == want, obj["key"]


def test_orphans_match_no_slug_and_refused_keys_are_refused(archive: Archive, media_map: mediamap.MediaMap) -> None:
    slugs = {r["slug"] for r in archive.manifest["rows"]}
    referenced = {r[c] for r in archive.manifest["rows"] for c in ("icon", "masthead") if r[c]}
    for obj in archive.of_kind("orphan"):
        assert naming.resolve(media_map, obj["key"]).slug not in slugs
        assert obj["key"] not in referenced and archive.head("primary", obj["key"]) is not None
    refused = archive.of_kind("refused")
    for obj in refused:
        with pytest.raises(UnsafeKeyError):
            naming.resolve(media_map, obj["key"])
        assert archive.head("primary", obj["key"]) is not None
    keys = {o["key"] for o in refused}
    assert "icons/" in keys and any("\t" in k for k in keys) and any(len(k) > 100 for k in keys)


def test_rerun_with_the_same_seed_changes_nothing(archive: Archive) -> None:
    before = archive.s3.list_objects_v2(Bucket=archive.bucket("primary"))["KeyCount"]
    out = manage(archive.env, "generate_archive", "--count", str(COUNT), "--seed", str(SEED))
    assert "already generated" in out
    assert archive.s3.list_objects_v2(Bucket=archive.bucket("primary"))["KeyCount"] == before


def test_same_seed_same_manifest(archive: Archive, db_conninfo: str, aws_endpoint: str, tmp_path: Path) -> None:
    manifest, _ = generate(project_env(db_conninfo, aws_endpoint), tmp_path / "again.json")
    assert manifest["buckets"] != archive.manifest["buckets"]  # a second, separate stack
    assert {k: v for k, v in manifest.items() if k != "buckets"} == {k: v for k, v in archive.manifest.items() if k != "buckets"}
