"""The embedded moto server, with the one S3 event moto does not send: "Object Deleted" for a delete marker.

On a versioned bucket (every bucket template.yaml creates), DeleteObject without a version id creates a delete marker,
and S3 sends EventBridge an "Object Deleted" event with "deletion-type": "Delete Marker Created" (S3 user guide,
"Amazon S3 event notifications" / "EventBridge event message structure"). moto 5.2 sends none
(moto/s3/models.py S3Backend.delete_object), so locally replicate would never unmirror a key Django deleted. This module
wraps that method to send the event as S3 shapes it (the key URL-encoded, as S3 encodes notification keys), then runs
moto's own server. Local tooling only: nothing deployed imports it (`python -m mediacanon.local.motoserver -H ... -p ...`).
"""

from __future__ import annotations

import copy
import itertools
import sys
from typing import Any
from urllib.parse import quote_plus

_sequence = itertools.count(1)


def delete_marker_event(bucket: Any, key_name: str, version_id: str, account_id: str) -> dict[str, Any]:
    """The EventBridge event S3 sends for a delete marker (its documented shape, not moto's created-event one)."""
    from moto.core.utils import unix_time
    from moto.events.utils import _BASE_EVENT_MESSAGE

    event: dict[str, Any] = copy.deepcopy(dict(_BASE_EVENT_MESSAGE))
    event.update(
        {
            "detail-type": "Object Deleted",
            "source": "aws.s3",
            "account": account_id,
            "time": unix_time(),
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name},
                "object": {
                    "key": quote_plus(key_name, safe="/"),
                    "version-id": version_id,
                    "sequencer": f"{next(_sequence):018X}",
                },
                "request-id": "MEDIACANONLOCAL",
                "requester": account_id,
                "source-ip-address": "127.0.0.1",
                "reason": "DeleteObject",
                "deletion-type": "Delete Marker Created",
            },
        }
    )
    return event


def install() -> None:
    from moto.events.models import events_backends
    from moto.s3.models import S3Backend

    original = S3Backend.delete_object

    def delete_object(self: Any, bucket_name: str, key_name: str, version_id: str | None = None, bypass: bool = False) -> Any:
        deleted, meta = original(self, bucket_name, key_name, version_id=version_id, bypass=bypass)
        bucket = self.get_bucket(bucket_name)
        notifications = bucket.notification_configuration
        marker = deleted and version_id is None and meta.get("delete-marker") == "true"
        if marker and notifications is not None and notifications.event_bridge is not None:
            event: Any = delete_marker_event(bucket, key_name, str(meta["version-id"]), self.account_id)
            for bus in events_backends[self.account_id][bucket.region_name].event_buses.values():
                for rule in bus.rules.values():  # each rule matches its own pattern, as for moto's own S3 events
                    rule.send_to_targets(event, transform_input=False)
        return deleted, meta

    S3Backend.delete_object = delete_object  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main

    install()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
