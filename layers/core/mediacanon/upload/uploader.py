"""The S3 side: what to do with a fingerprinted file (present, conflict or upload), and the Uploader that runs
the tasks in parallel and uploads through one boto3 transfer manager."""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.subscribers import BaseSubscriber

from mediacanon.adapters.s3 import translate_error
from mediacanon.core.errors import MediacanonError, RetryableError
from mediacanon.upload.fingerprints import Fingerprint, same_checksum
from mediacanon.upload.outcomes import Item, Outcome, Summary

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import S3Adapter


@dataclass(frozen=True)
class UploadJob:
    """A file that should be in the primary bucket and is not; `item` is its report line once uploaded."""

    path: str
    key: str
    content_type: str
    item: Item


Decision = Item | UploadJob


class _Done(BaseSubscriber):  # type: ignore[misc]
    def __init__(self, events: queue.Queue[tuple[str, Any]], job: UploadJob) -> None:
        self.events = events
        self.job = job

    def on_done(self, future: Any, **kwargs: Any) -> None:
        try:
            future.result()
        except BaseException as exc:  # reported per file by the main thread, which decides what is fatal
            self.events.put(("uploaded", (self.job, exc)))
        else:
            self.events.put(("uploaded", (self.job, None)))

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.events.put(("bytes", bytes_transferred))


@dataclass
class Uploader:
    """Runs decisions in parallel (reading, hashing, HEADs) and uploads through one boto3 transfer manager.

    `on_item` gets every report line in the calling thread, as it is decided; `on_bytes` the bytes sent."""

    s3: S3Adapter
    bucket: str
    transfer_config: TransferConfig = field(default_factory=TransferConfig)
    workers: int = 8
    dry_run: bool = False
    on_item: Callable[[Item], None] = lambda item: None
    on_bytes: Callable[[int], None] = lambda n: None
    on_task_done: Callable[[], None] = lambda: None  # a task ends with its last report line (after its upload)
    summary: Summary = field(default_factory=Summary)

    def emit(self, item: Item) -> None:
        self.summary.add(item)
        self.on_item(item)

    def run(self, tasks: Sequence[Callable[[], list[Decision]]]) -> Summary:
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        config = TransferConfig(
            multipart_threshold=self.transfer_config.multipart_threshold,
            multipart_chunksize=self.transfer_config.multipart_chunksize,
            max_concurrency=self.workers,
            preferred_transfer_client="classic",  # the CRT client is another code path; keep the one moto tests
        )

        def prepared(task: Callable[[], list[Decision]]) -> None:
            try:
                events.put(("prepared", task()))
            except BaseException as exc:  # not swallowed: handed to the main thread, which raises it
                events.put(("crashed", exc))

        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mediacanon-upload")
        manager = create_transfer_manager(self.s3.client, config)
        try:
            with manager:
                for task in tasks:
                    pool.submit(prepared, task)
                pending = len(tasks)
                while pending:
                    kind, payload = events.get()
                    if kind == "bytes":
                        self.on_bytes(payload)
                        continue
                    pending -= 1
                    if kind == "crashed":
                        raise payload
                    if kind == "prepared":
                        pending += self._start(payload, manager, events)
                    elif kind == "uploaded":
                        job, exc = payload
                        self.emit(self._uploaded(job, exc))
                        self.on_task_done()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return self.summary

    def _start(self, decisions: list[Decision], manager: Any, events: queue.Queue[tuple[str, Any]]) -> int:
        """A prepared task's decisions: its items reported, its uploads started (a dry run's reported as would-be).
        Returns how many uploads it started, each to report when it ends."""
        if not any(isinstance(d, UploadJob) for d in decisions) or self.dry_run:
            self.on_task_done()
        started = 0
        for decision in decisions:
            if isinstance(decision, Item):
                self.emit(decision)
            elif self.dry_run:
                self.emit(replace(decision.item, outcome=Outcome.WOULD_UPLOAD))
            else:
                # never an ACL: the bucket's policy decides access
                manager.upload(
                    decision.path,
                    self.bucket,
                    decision.key,
                    extra_args={"ContentType": decision.content_type},
                    subscribers=[_Done(events, decision)],
                )
                started += 1
        return started

    def _uploaded(self, job: UploadJob, exc: BaseException | None) -> Item:
        if exc is None:
            return job.item
        if isinstance(exc, ClientError):
            error: BaseException = translate_error(exc, f"upload s3://{self.bucket}/{job.key}")
        elif isinstance(exc, BotoCoreError | OSError):
            error = RetryableError(f"upload s3://{self.bucket}/{job.key}: {type(exc).__name__}: {exc}")
        elif isinstance(exc, MediacanonError):
            error = exc
        else:
            raise exc  # a cancelled transfer (Ctrl-C) or a bug: not a per-file outcome
        return replace(job.item, outcome=Outcome.FAILED, reason=f"{error} (fix: run the same command again; it resumes)")


def checked(decide: Callable[[], Decision], base: Item) -> Decision:
    """A file whose S3 check fails (throttled, unreachable, no such bucket) is a failed line; the run goes on."""
    try:
        return decide()
    except MediacanonError as exc:
        return replace(base, outcome=Outcome.FAILED, reason=f"{exc} (fix: run the same command again; it resumes)")


def decide_upload(
    s3: S3Adapter, bucket: str, path: str, key: str, fp: Fingerprint, canonical_key: str | None, base: Item
) -> Decision:
    """Present (same checksum under the key or, once the live path moved it, its canonical key), a conflict
    (other bytes under the key: never overwritten), or an upload."""
    item = replace(base, key=key, size=fp.size, md5=fp.md5, content_type=fp.content_type)
    head = s3.head(bucket, key)
    if head is not None:
        if same_checksum(fp, head):
            return replace(item, outcome=Outcome.PRESENT, reason="already in the primary bucket (same checksum)")
        return replace(
            item,
            outcome=Outcome.CONFLICT,
            reason=f"s3://{bucket}/{key} holds other bytes (ETag {head.etag}); left alone "
            "(fix: compare the two and delete the one you do not want, then run again)",
        )
    if canonical_key and canonical_key != key:
        target = s3.head(bucket, canonical_key)
        if target is not None and same_checksum(fp, target):
            return replace(item, outcome=Outcome.PRESENT, reason=f"already canonical as {canonical_key} (same checksum)")
    return UploadJob(path, key, fp.content_type, replace(item, outcome=Outcome.UPLOADED, reason=base.reason or "uploaded"))
