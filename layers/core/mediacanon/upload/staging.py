"""Staging trees: the key prefix the tree sits under, its files named by the staging patterns and grouped by
(field, slug), and one task per group that picks its image and checks it against the primary bucket."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from boto3.s3.transfer import TransferConfig

from mediacanon.core import naming
from mediacanon.core.errors import UnmappedKeyError, UnsafeKeyError
from mediacanon.core.mediamap import MediaMap
from mediacanon.upload.fingerprints import fingerprint
from mediacanon.upload.manifest import Manifest
from mediacanon.upload.outcomes import BadInput, Item, Outcome, display_path
from mediacanon.upload.tree import LocalFile, walk
from mediacanon.upload.uploader import Decision, checked, decide_upload

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import S3Adapter


@dataclass(frozen=True)
class Candidate:
    file: LocalFile
    key: str
    resolution: naming.Resolution
    rank: int  # index of the staging pattern that named it: the earlier pattern is preferred


def staging_prefix(media_map: MediaMap, root_name: str, rels: Sequence[str]) -> str:
    """The key prefix under which the tree's files match the staging patterns: '' when DIR holds `downloads/`,
    'downloads/' when DIR is `downloads/` itself (and the field's location in front of either)."""
    options = [""]
    for mapping in media_map.fields:
        if not mapping.tenant_scoped:
            options += [mapping.location, f"{mapping.location}{root_name}/"]
    options.insert(1, f"{root_name}/")
    best, best_hits = "", -1
    for prefix in dict.fromkeys(options):
        hits = sum(1 for rel in rels if _staging_resolution(media_map, prefix + rel) is not None)
        if hits > best_hits:
            best, best_hits = prefix, hits
    return best


def _staging_resolution(media_map: MediaMap, key: str) -> tuple[naming.Resolution, int] | None:
    try:
        res = naming.resolve(media_map, key)
    except (UnsafeKeyError, UnmappedKeyError):
        return None
    if res.staging_pattern is None:
        return None
    rank = next((i for i, p in enumerate(res.field.staging) if p == res.staging_pattern), len(res.field.staging))
    return res, rank


def classify(
    media_map: MediaMap, files: Iterable[LocalFile], prefix: str
) -> tuple[dict[tuple[str, str], list[Candidate]], list[Item]]:
    """Group the files by (field, slug), best candidate first; an Item for each file no staging pattern names."""
    groups: dict[tuple[str, str], list[Candidate]] = {}
    unnamed: list[Item] = []
    for f in files:
        key = prefix + f.rel
        try:
            naming.check_key(key)
        except UnsafeKeyError as exc:
            unnamed.append(Item(display_path(f.path), Outcome.INVALID, f"{exc.reason} (fix: rename it)", key=key))
            continue
        hit = _staging_resolution(media_map, key)
        if hit is None:
            why = "no staging pattern of the media map names it"
            try:
                naming.resolve(media_map, key)
            except (UnsafeKeyError, UnmappedKeyError) as exc:
                why = exc.reason
            else:
                why = "it is not under a staging folder (upload_to keys are Django's to write)"
            unnamed.append(Item(display_path(f.path), Outcome.UNMAPPED, why, key=key))
            continue
        res, rank = hit
        groups.setdefault((res.field.name, (res.tenant or "") + "/" + res.slug), []).append(Candidate(f, key, res, rank))
    for candidates in groups.values():
        candidates.sort(key=lambda c: (c.rank, c.key))
    return groups, unnamed


def staging_tasks(
    media_map: MediaMap,
    s3: S3Adapter,
    root: Path,
    *,
    manifest: Manifest | None,
    key_prefix: str | None = None,
    transfer_config: TransferConfig | None = None,
) -> tuple[list[Item], list[Callable[[], list[Decision]]], str]:
    """Walk the tree and plan it: the report lines known at once (bad input, unnamed files, manifest lines),
    one task per (field, slug) that picks and checks its image, and the key prefix used."""
    config = transfer_config or TransferConfig()
    bucket = media_map.buckets.primary
    files: list[LocalFile] = []
    early: list[Item] = []
    for entry in walk(root):
        (files if isinstance(entry, LocalFile) else early).append(entry)  # type: ignore[arg-type]
    prefix = key_prefix if key_prefix is not None else staging_prefix(media_map, root.resolve().name, [f.rel for f in files])
    groups, unnamed = classify(media_map, files, prefix)
    early += unnamed
    if manifest is not None:
        early += manifest.problems
        in_tree = {slug.rsplit("/", 1)[-1] for _, slug in groups}
        for slug, (_, line) in sorted(manifest.verdicts.items(), key=lambda kv: kv[1][1]):
            if slug not in in_tree:
                early.append(
                    Item(
                        f"{manifest.source}:{line}",
                        Outcome.INVALID,
                        f"unknown slug {slug!r}: no staging folder of {display_path(root)} holds it "
                        "(fix: correct the slug, or scrape its folder)",
                        slug=slug,
                    )
                )
    tasks: list[Callable[[], list[Decision]]] = []
    for candidates in groups.values():
        slug = candidates[0].resolution.slug
        if manifest is not None:
            admitted, why = manifest.admits(slug)
            if not admitted:
                early += [_item(c, Outcome.NOT_AUDITED, why) for c in candidates]
                continue
        tasks.append(_pick_task(s3, bucket, candidates, config))
    return early, tasks, prefix


def _item(c: Candidate, outcome: Outcome, reason: str) -> Item:
    return Item(display_path(c.file.path), outcome, reason, key=c.key, field=c.resolution.field.name, slug=c.resolution.slug)


def _pick_task(s3: S3Adapter, bucket: str, candidates: list[Candidate], config: TransferConfig) -> Callable[[], list[Decision]]:
    def pick() -> list[Decision]:
        out: list[Decision] = []
        for i, c in enumerate(candidates):
            try:
                fp = fingerprint(c.file.path, config)
            except BadInput as exc:
                out.append(_item(c, Outcome.INVALID, str(exc)))
                continue
            base = _item(c, Outcome.UPLOADED, f"picked by staging {c.resolution.field.staging[c.rank]!r}")
            out.append(
                checked(partial(decide_upload, s3, bucket, c.file.path, c.key, fp, c.resolution.canonical_key, base), base)
            )
            out += [_item(o, Outcome.NOT_PICKED, f"{c.key} is this slug's image") for o in candidates[i + 1 :]]
            break
        return out

    return pick
