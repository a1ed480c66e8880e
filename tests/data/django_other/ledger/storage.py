"""Storages the ledger's fields name through `storage=`: a callable returning a STORAGES alias, and an instance."""

from __future__ import annotations

from django.core.files.storage import Storage, storages
from storages.backends.s3 import S3Storage


def documents_storage() -> Storage:
    return storages["documents"]


# the primary bucket again, under another location
archive_storage = S3Storage(bucket_name="ledger-media", location="archive")
