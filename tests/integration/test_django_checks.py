"""The `mediacanon.django` app's system checks, as `manage.py check` shows them to a Django user.

Each case runs the acceptance site's settings (tests/acceptance/django_site/mediasite/settings.py) with the app
installed (tests/acceptance/canonical_site/canonsite/check_settings.py), one bad setting on top, and the sample's media
map (or a copy with one change), in a process of its own: Django's settings are process-global. No AWS and no
database: the checks read settings, models and the media map only.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANAGE = REPO / "tests" / "acceptance" / "canonical_site" / "manage.py"
SAMPLE_MAP = REPO / "sample" / "mediamap.yaml"
ISSUE = re.compile(r"^(?P<obj>\S+): \((?P<id>mediacanon\.[EW]\d{3})\) (?P<msg>.*)\n\tHINT: (?P<hint>.*)$", re.M)
ARCHIVE = ("archive.PublicationSource.icon", "archive.PublicationSource.masthead")
ALL_FIELDS = (*ARCHIVE, "tenants.TenantPublication.icon")


@dataclass(frozen=True)
class Issue:
    obj: str  # "archive.PublicationSource.icon", or "?" for a message about no one model field
    id: str
    msg: str
    hint: str


@dataclass(frozen=True)
class Checked:
    returncode: int
    issues: list[Issue]
    output: str


MapEdit = Callable[[dict[str, Any]], None]


def check(tmp_path: Path, overrides: dict[str, Any] | None = None, edit: MapEdit | None = None, *, write: bool = True) -> Checked:
    """`manage.py check --tag mediacanon` on the acceptance site's settings plus `overrides`, with the sample's media map
    (changed by `edit`; none at all without `write`) as MEDIACANON_CONFIG."""
    data = yaml.safe_load(SAMPLE_MAP.read_text(encoding="utf-8"))
    if edit is not None:
        edit(data)
    config = tmp_path / "mediamap.yaml"
    if write:
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MEDIACANON_", "MEDIASITE_", "CANONSITE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="canonsite.check_settings",
        MEDIACANON_CONFIG=str(config),  # the environment's: the acceptance site's settings name no map
        CANONSITE_OVERRIDES=json.dumps(overrides or {}),
        DATABASE_URL="postgresql://checks@127.0.0.1:1/unused",  # never connected to: the checks read no database
        AWS_ENDPOINT_URL="http://127.0.0.1:1",  # never connected to either
        MEDIASITE_PRIMARY_BUCKET="archive-media",  # the sample map's buckets
        MEDIASITE_CDN_BUCKET="archive-cdn",
        MEDIASITE_CDN_URL="https://cdn.example.com/archive-cdn",
    )
    proc = subprocess.run(
        [sys.executable, str(MANAGE), "check", "--tag", "mediacanon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    issues = [Issue(**m.groupdict()) for m in ISSUE.finditer(output)]
    # every mediacanon issue printed was parsed: none hides behind a format this test does not read
    assert len(issues) == output.count("(mediacanon."), output
    return Checked(proc.returncode, issues, output)


def test_the_acceptance_sites_settings_and_the_sample_map_give_no_mediacanon_issue(tmp_path: Path) -> None:
    checked = check(tmp_path)
    # the tag exists (Django refuses an unknown one), and nothing is flagged
    assert (checked.returncode, checked.issues) == (0, []), checked.output
    assert "System check identified no issues" in checked.output


def _set_policy(collision: str) -> MapEdit:
    def edit(data: dict[str, Any]) -> None:
        data["defaults"]["policies"]["collision"] = collision

    return edit


def _icon_upload_to(data: dict[str, Any]) -> None:
    data["fields"][0].update(upload_to="favicons/", canonical="favicons/{slug}{ext}")


def _bad_fields(data: dict[str, Any]) -> None:
    good = data["fields"][0]
    for i, name in enumerate(["archive.Nope.icon", "archive.PublicationSource.logo", "archive.PublicationSource.name"]):
        data["fields"].append(
            {**copy.deepcopy(good), "name": name, "upload_to": f"other{i}/", "canonical": f"other{i}/{{slug}}{{ext}}"}
        )


def _wrong_table(data: dict[str, Any]) -> None:
    data["fields"][0]["table"] = "archive_publication"


# (case, settings on top of the acceptance site's, media map edit, id, objects flagged, in the message, in the hint)
CASES: list[tuple[str, dict[str, Any], MapEdit | None, str, tuple[str, ...], str, str]] = [
    (
        "AWS_DEFAULT_ACL",
        {"AWS_DEFAULT_ACL": "public-read"},
        None,
        "mediacanon.W001",
        ("?",),
        "AWS_DEFAULT_ACL is 'public-read' (STORAGES['default'], the storage of " + ", ".join(ALL_FIELDS) + "): buckets "
        "with ACLs disabled",
        "set AWS_DEFAULT_ACL = None",
    ),
    (
        "OPTIONS default_acl",
        {"STORAGES.default.OPTIONS.default_acl": "public-read"},
        None,
        "mediacanon.W001",
        ("?",),
        "STORAGES['default']['OPTIONS']['default_acl'] is 'public-read'",
        "set STORAGES['default']['OPTIONS']['default_acl'] = None",
    ),
    (
        "object_parameters ACL",
        {"AWS_S3_OBJECT_PARAMETERS": {"ACL": "public-read", "CacheControl": "max-age=86400"}},
        None,
        "mediacanon.W001",
        ("?",),
        "AWS_S3_OBJECT_PARAMETERS sets ACL 'public-read'",
        "remove 'ACL' from AWS_S3_OBJECT_PARAMETERS",
    ),
    (
        "querystring_auth on the CDN domain",
        {"AWS_QUERYSTRING_AUTH": True},
        None,
        "mediacanon.W002",
        ("?",),
        "AWS_QUERYSTRING_AUTH is True while STORAGES['default']['OPTIONS']['custom_domain'] is 'cdn.example.com/archive-cdn'",
        "set AWS_QUERYSTRING_AUTH = False",
    ),
    (
        "querystring_auth by django-storages' default",
        {"AWS_QUERYSTRING_AUTH": None},
        None,
        "mediacanon.W002",
        ("?",),
        "AWS_QUERYSTRING_AUTH (not set: django-storages' default) is True while",
        "set AWS_QUERYSTRING_AUTH = False",
    ),
    (
        "file_overwrite with keep-both",
        {"AWS_S3_FILE_OVERWRITE": True},
        None,
        "mediacanon.W003",
        ALL_FIELDS,
        "AWS_S3_FILE_OVERWRITE is True (STORAGES['default']), but the media map's collision policy for",
        "set AWS_S3_FILE_OVERWRITE = False",
    ),
    (
        "file_overwrite with fail",
        {"AWS_S3_FILE_OVERWRITE": True},
        _set_policy("fail"),
        "mediacanon.W003",
        ALL_FIELDS,
        "is 'fail': Django writes a new file over whatever its name holds",
        "or policies.collision: overwrite for",
    ),
    (
        "no file_overwrite with overwrite",
        {},
        _set_policy("overwrite"),
        "mediacanon.W003",
        ALL_FIELDS,
        "AWS_S3_FILE_OVERWRITE is False (STORAGES['default']), but the media map's collision policy for",
        "set AWS_S3_FILE_OVERWRITE = True",
    ),
    (
        "AWS_LOCATION",
        {"AWS_LOCATION": "media"},
        None,
        "mediacanon.W004",
        ARCHIVE,  # the tenant field's location is the tenant's: not compared
        "AWS_LOCATION is 'media' (STORAGES['default']), but the media map's location for",
        "set AWS_LOCATION = '', or location: 'media/' for",
    ),
    (
        "OPTIONS bucket_name",
        {"STORAGES.default.OPTIONS.bucket_name": "archive-uploads"},
        None,
        "mediacanon.W005",
        ("?",),
        "STORAGES['default']['OPTIONS']['bucket_name'] is 'archive-uploads' (STORAGES['default'], the storage of",
        "set STORAGES['default']['OPTIONS']['bucket_name'] = 'archive-media', or buckets.primary: 'archive-uploads'",
    ),
    (
        "upload_to",
        {},
        _icon_upload_to,
        "mediacanon.W006",
        (ARCHIVE[0],),
        "upload_to is 'icons/', but the media map's upload_to for archive.PublicationSource.icon is 'favicons/'",
        "use upload_to=canonical_upload_to('archive.PublicationSource.icon')",
    ),
    (
        "unknown model and fields",
        {},
        _bad_fields,
        "mediacanon.E002",
        ("?", "?", "?"),
        "maps field 'archive.",
        "name it app_label.Model.field of a FileField or ImageField",
    ),
    (
        "table",
        {},
        _wrong_table,
        "mediacanon.E003",
        (ARCHIVE[0],),
        "table is 'archive_publication', the model's db_table 'archive_publicationsource'",
        "copy them from the model into fields[archive.PublicationSource.icon]",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "edit", "check_id", "objs", "in_msg", "in_hint"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_setting_that_fights_mediacanon_is_flagged_with_its_id_the_setting_and_the_fix(
    tmp_path: Path,
    overrides: dict[str, Any],
    edit: MapEdit | None,
    check_id: str,
    objs: tuple[str, ...],
    in_msg: str,
    in_hint: str,
) -> None:
    checked = check(tmp_path, overrides, edit)

    assert [i.id for i in checked.issues] == [check_id] * len(objs), checked.output  # that setting's issue, no other
    assert tuple(i.obj for i in checked.issues) == objs, checked.output
    for issue in checked.issues:
        assert in_msg in issue.msg, issue
        assert in_hint in issue.hint, issue
    assert checked.returncode == (1 if check_id.startswith("mediacanon.E") else 0), checked.output


def test_an_unknown_model_a_missing_field_and_a_field_that_holds_no_file_are_each_named(tmp_path: Path) -> None:
    messages = [i.msg for i in check(tmp_path, edit=_bad_fields).issues]
    source = tmp_path / "mediamap.yaml"
    assert messages == [
        f"the media map {source} maps field 'archive.Nope.icon', but no installed app has a model archive.Nope",
        f"the media map {source} maps field 'archive.PublicationSource.logo', but archive.PublicationSource has no field 'logo'",
        f"the media map {source} maps field 'archive.PublicationSource.name', but archive.PublicationSource.name is a "
        "CharField, not a FileField or ImageField",
    ]


@pytest.mark.parametrize(
    ("overrides", "edit"),
    [
        ({"AWS_QUERYSTRING_AUTH": True, "STORAGES.default.OPTIONS.custom_domain": None}, None),  # signed S3 URLs: fine
        ({"AWS_S3_FILE_OVERWRITE": True}, _set_policy("overwrite")),
        ({"AWS_LOCATION": "media/"}, lambda data: data["defaults"].update(location="media/")),
    ],
    ids=["querystring_auth without custom_domain", "file_overwrite with overwrite", "location as the map's"],
)
def test_the_settings_that_agree_with_the_map_are_not_flagged(
    tmp_path: Path, overrides: dict[str, Any], edit: MapEdit | None
) -> None:
    checked = check(tmp_path, overrides, edit)
    assert (checked.returncode, checked.issues) == (0, []), checked.output


@pytest.mark.parametrize(
    ("write", "problem"),
    [(False, "file: does not exist"), (True, "fields: must be a list, got str")],
    ids=["missing", "invalid"],
)
def test_a_missing_or_invalid_media_map_is_an_error_naming_the_file_the_setting_and_the_fix(
    tmp_path: Path, write: bool, problem: str
) -> None:
    def invalid(data: dict[str, Any]) -> None:
        data["fields"] = "not a list"

    checked = check(tmp_path, edit=invalid, write=write)
    assert checked.returncode == 1, checked.output
    [issue] = checked.issues
    config = tmp_path / "mediamap.yaml"
    assert issue.id == "mediacanon.E001"
    named = f"mediacanon's media map '{config}' (named by the environment's MEDIACANON_CONFIG) cannot be used: {config}: "
    assert issue.msg.startswith(named + problem), issue
    assert issue.hint.startswith("set MEDIACANON_CONFIG in the settings to the path of a valid media map"), issue
