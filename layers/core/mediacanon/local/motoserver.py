"""The embedded moto server, with the S3 events moto gets wrong: "Object Deleted" for a delete marker, which it does
not send, and the "reason" of "Object Created", which it names after the event type.

On a versioned bucket (every bucket template.yaml creates), DeleteObject without a version id creates a delete marker,
and S3 sends EventBridge an "Object Deleted" event with "deletion-type": "Delete Marker Created" (S3 user guide,
"Amazon S3 event notifications" / "EventBridge event message structure"). moto 5.2 sends none
(moto/s3/models.py S3Backend.delete_object), so locally replicate would never unmirror a key Django deleted. This module
wraps that method to send the event as S3 shapes it (the key URL-encoded, as S3 encodes notification keys), then runs
moto's own server.

S3 names an "Object Created" event's `reason` after the request that wrote the object: PutObject, POST Object,
CopyObject or CompleteMultipartUpload (S3 user guide, "EventBridge event message structure"). moto 5.2 sends
"ObjectCreated" for all of them (moto/s3/notifications.py `_send_event_bridge_message`: event_name.split(":")[1]), so
locally the steps would never see what separates an upload from a copy (steps.UPLOAD_REASONS). `created_reasons` fixes
the reason on moto's event as it is sent. Local tooling only: nothing deployed imports it (`python -m mediacanon.local.motoserver -H ... -p ...`).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import sys
from typing import Any
from urllib.parse import quote_plus

_sequence = itertools.count(1)


def _s3_event(detail_type: str, bucket: Any, account_id: str, obj: dict[str, Any], **detail: str) -> dict[str, Any]:
    """An S3 event as EventBridge delivers it: the envelope, the bucket, `obj` as detail.object, then `detail`."""
    from moto.core.utils import unix_time
    from moto.events.utils import _BASE_EVENT_MESSAGE

    event: dict[str, Any] = copy.deepcopy(dict(_BASE_EVENT_MESSAGE))
    event.update(
        {
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": account_id,
            "time": unix_time(),
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name},
                "object": obj,
                "request-id": "MEDIACANONLOCAL",
                "requester": account_id,
                "source-ip-address": "127.0.0.1",
                **detail,
            },
        }
    )
    return event


def delete_marker_event(bucket: Any, key_name: str, version_id: str, account_id: str) -> dict[str, Any]:
    """The EventBridge event S3 sends for a delete marker (its documented shape, not moto's created-event one)."""
    obj = {"key": quote_plus(key_name, safe="/"), "version-id": version_id, "sequencer": f"{next(_sequence):018X}"}
    return _s3_event(
        "Object Deleted", bucket, account_id, obj, reason="DeleteObject", **{"deletion-type": "Delete Marker Created"}
    )


# moto's event names (moto.s3.notifications.S3NotificationEvent) -> the reason S3 sends on EventBridge
CREATED_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}


def created_event(bucket: Any, key: Any, reason: str, account_id: str) -> dict[str, Any]:
    """The EventBridge event S3 sends for an object written by `reason`: moto's own created-event shape
    (moto/s3/notifications.py `_send_event_bridge_message`: the key as stored, "eTag"), with S3's reason."""
    obj = {
        "key": key.name,
        "size": key.size,
        "eTag": key.etag.replace('"', ""),
        "version-id": key.version_id,
        "sequencer": "617f08299329d189",  # moto's (one for every event): the steps order a key's links by the ledger
    }
    return _s3_event("Object Created", bucket, account_id, obj, reason=reason)


def _send(account_id: str, region: str, event: dict[str, Any]) -> None:
    from moto.events.models import events_backends

    for bus in events_backends[account_id][region].event_buses.values():
        for rule in bus.rules.values():  # each rule matches its own pattern, as for moto's own S3 events
            rule.send_to_targets(event, transform_input=False)  # type: ignore[arg-type]


def created_reasons() -> None:
    """Replace moto's EventBridge send for "Object Created" events by one with S3's reason (CREATED_REASONS); other
    events go through moto's as before. Like moto's, a failure here never fails the request that wrote the object."""
    from moto.s3 import notifications

    original = notifications._send_event_bridge_message
    if getattr(original, "mediacanon", False):
        return

    def send_event_bridge_message(account_id: str, bucket: Any, event_name: Any, key: Any) -> None:
        reason = CREATED_REASONS.get(str(getattr(event_name, "value", event_name)))
        if reason is None:
            original(account_id, bucket, event_name, key)
            return
        with contextlib.suppress(Exception):  # as moto's own send: S3 events are asynchronous
            _send(account_id, bucket.region_name, created_event(bucket, key, reason, account_id))

    send_event_bridge_message.mediacanon = True  # type: ignore[attr-defined]
    notifications._send_event_bridge_message = send_event_bridge_message


def install() -> None:
    from moto.s3.models import S3Backend

    created_reasons()

    original = S3Backend.delete_object

    def delete_object(self: Any, bucket_name: str, key_name: str, version_id: str | None = None, bypass: bool = False) -> Any:
        deleted, meta = original(self, bucket_name, key_name, version_id=version_id, bypass=bypass)
        bucket = self.get_bucket(bucket_name)
        notifications = bucket.notification_configuration
        marker = deleted and version_id is None and meta.get("delete-marker") == "true"
        if marker and notifications is not None and notifications.event_bridge is not None:
            _send(
                self.account_id,
                bucket.region_name,
                delete_marker_event(bucket, key_name, str(meta["version-id"]), self.account_id),
            )
        return deleted, meta

    S3Backend.delete_object = delete_object  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main

    install()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
