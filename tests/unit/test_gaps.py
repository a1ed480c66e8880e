"""The gaps of a media map (mediacanon.core.gaps) and `mediacanon init`'s pure half: FieldInfo -> map draft -> YAML
(mediacanon.django.introspect.build and render), without Django."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediacanon.core import gaps, mediamap
from mediacanon.django.introspect import FieldInfo, StorageInfo, build, render, scalar

SAMPLE_MAP = Path(__file__).resolve().parents[2] / "sample" / "mediamap.yaml"
S3 = StorageInfo(label="STORAGES['default']", backend="storages.backends.s3.S3Storage", s3=True, bucket="site-media")


def info(name: str = "shop.Product.photo", **changes: Any) -> FieldInfo:
    base = FieldInfo(
        name=name,
        table="shop_product",
        column=name.rsplit(".", 1)[1],
        db_column=False,
        id_column="id",
        slug_column="slug",
        upload_to="photos/",
        upload_to_callable=None,
        max_length=100,
        image=False,
        storage=S3,
    )
    return replace(base, **changes)


def written(*infos: FieldInfo) -> tuple[str, mediamap.MediaMap]:
    text = render(build(infos, "shop.settings"))
    return text, mediamap.parse(yaml.safe_load(text))


def base_map(**field: Any) -> dict[str, Any]:
    entry = {
        "name": "a.B.c",
        "table": "a_b",
        "column": "c",
        "slug_column": "slug",
        "upload_to": "c/",
        "canonical": "c/{slug}{ext}",
    }
    entry.update(field)
    return {"buckets": {"primary": "site-media", "cdn": "site-cdn"}, "fields": [entry]}


def test_the_hand_written_sample_has_no_gaps() -> None:
    assert gaps.find_gaps(mediamap.load(SAMPLE_MAP)) == []


def test_slug_column_equal_to_id_column_is_a_gap() -> None:
    (gap,) = gaps.find_gaps(mediamap.parse(base_map(slug_column="pk_col", id_column="pk_col")))
    assert str(gap) == (
        "field a.B.c: no unique SlugField on the model: canonical keys are named by row id (pk_col) "
        "(fix: add a unique SlugField and set slug_column)"
    )
    assert gap.where == "fields[a.B.c].slug_column"


@pytest.mark.parametrize(
    ("field", "where", "says"),
    [
        ({"upload_to": "FILL-IN-a.B.c/", "canonical": "FILL-IN-a.B.c/{slug}{ext}"}, "upload_to", "is a placeholder"),
        ({"upload_to": "docs/%Y/", "canonical": "docs/%Y/{slug}{ext}"}, "upload_to", "strftime pattern"),
        ({"include": ["*.pdf", "FILL-IN-a.B.c-*"]}, "include", "shares its location and upload_to"),
        ({"location": "fill-in/"}, "location", "location holds a placeholder"),
    ],
)
def test_placeholders_and_patterns_are_gaps(field: dict[str, Any], where: str, says: str) -> None:
    (gap,) = gaps.find_gaps(mediamap.parse(base_map(**field)))
    assert gap.where == f"fields[a.B.c].{where}"
    assert says in gap.problem and gap.fix


def test_placeholder_buckets_are_gaps() -> None:
    data = base_map()
    data["buckets"] = {"primary": "fill-in-primary-bucket", "cdn": "fill-in-primary-bucket-cdn-fill-in"}
    found = gaps.find_gaps(mediamap.parse(data))
    assert [g.subject for g in found] == ["buckets.primary", "buckets.cdn"]
    assert "CdnBucketName" in found[1].fix


def test_a_plain_field_renders_to_a_map_without_field_gaps() -> None:
    text, parsed = written(info(image=True, max_length=150))
    field = parsed.field("shop.Product.photo")
    assert (field.table, field.column, field.slug_column, field.upload_to, field.canonical, field.max_length) == (
        "shop_product",
        "photo",
        "slug",
        "photos/",
        "photos/{slug}{ext}",
        150,
    )
    assert "*.png" in field.include
    assert parsed.buckets.primary == "site-media" and parsed.buckets.cdn == "site-media-cdn-fill-in"
    assert [g.subject for g in gaps.find_gaps(parsed)] == ["buckets.cdn"]
    assert text.startswith("# The media map of the Django project shop.settings")
    assert all(len(line) <= 118 for line in text.splitlines() if line.lstrip().startswith("#"))


def test_upload_to_is_made_a_prefix_and_callables_and_empties_are_placeholders() -> None:
    _, parsed = written(
        info("a.M.bare", upload_to="/bare"),
        info("a.M.fn", upload_to=None, upload_to_callable="a.paths.fn"),
        info("a.M.root", upload_to=""),
        info("a.M.dated", upload_to="docs/%Y/%m/"),
        info("a.M.undated", upload_to="%Y/"),
    )
    assert parsed.field("a.M.bare").upload_to == "bare/"
    assert parsed.field("a.M.dated").canonical == "docs/{slug}{ext}"
    for name in ("a.M.fn", "a.M.root", "a.M.undated"):
        assert parsed.field(name).upload_to == f"FILL-IN-{name}/"
    found = {g.subject for g in gaps.find_gaps(parsed) if g.where.endswith(".upload_to")}
    assert found == {"field a.M.fn", "field a.M.root", "field a.M.undated"}


def test_the_callable_is_named_in_a_comment() -> None:
    text, _ = written(info(upload_to=None, upload_to_callable="shop.paths.photo_path"))
    assert "# GAP: upload_to is the callable shop.paths.photo_path; init does not call it." in text


def test_no_slug_writes_the_id_column_and_a_gap() -> None:
    text, parsed = written(info(slug_column=None, id_column="product_id", slug_hint="the SlugField 'code' is not unique"))
    field = parsed.field("shop.Product.photo")
    assert field.slug_column == field.id_column == "product_id"
    assert "GAP: no unique SlugField on shop.Product" in text and "the SlugField 'code' is not unique" in text
    assert [g.where for g in gaps.find_gaps(parsed)][-1] == "fields[shop.Product.photo].slug_column"


def test_the_primary_is_the_most_common_bucket_others_are_commented_out() -> None:
    docs = StorageInfo(label="STORAGES['docs']", backend="x.S3", s3=True, bucket="site-docs", location="private/")
    text, parsed = written(info("a.M.one"), info("a.M.two", upload_to="two/"), info("a.M.doc", upload_to="doc/", storage=docs))
    assert parsed.buckets.primary == "site-media"
    assert [f.name for f in parsed.fields] == ["a.M.one", "a.M.two"]
    assert "# GAP: other fields write to site-docs" in text
    assert "  # - name: a.M.doc" in text and "  #   location: private/" in text


def test_no_s3_storage_at_all_leaves_the_primary_to_fill_in() -> None:
    local = StorageInfo(label="a FileSystemStorage instance", backend="django.core.files.storage.FileSystemStorage", s3=False)
    text, parsed = written(info(storage=local))
    assert parsed.buckets.primary == "fill-in-primary-bucket"
    assert [g.subject for g in gaps.find_gaps(parsed)] == ["buckets.primary", "buckets.cdn"]
    assert "GAP: not an S3 storage" in text


def test_fields_sharing_a_prefix_get_include_placeholders() -> None:
    _, parsed = written(info("a.M.pdf"), info("a.M.receipt"), info("a.M.photo", image=True))
    assert parsed.field("a.M.pdf").include == ("FILL-IN-a.M.pdf-*",)
    assert parsed.field("a.M.receipt").include == ("FILL-IN-a.M.receipt-*",)
    assert "FILL-IN" not in "".join(parsed.field("a.M.photo").include)  # its image patterns tell it apart


def test_an_out_of_range_max_length_is_clamped_with_a_comment() -> None:
    text, parsed = written(info(max_length=2000))
    assert parsed.field("shop.Product.photo").max_length == 1024
    assert "the model says 2000" in text


@pytest.mark.parametrize("value", ["yes", "No", "null", "{slug}", "a: b", "#x", "123", "", "-x", "é/ü", "[a]"])
def test_scalars_read_back_as_written(value: str) -> None:
    assert yaml.safe_load(f"k: {scalar(value)}") == {"k": value}
    assert yaml.safe_load(f"k: {scalar([value, 7])}") == {"k": [value, 7]}
