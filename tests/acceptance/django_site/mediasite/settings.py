"""Settings of the acceptance site: a Django project whose media live in S3 through django-storages and are
served from the CDN bucket's domain, the way a site behind mediacanon runs. Its models are the sample archive's.

Every machine-specific value comes from the environment, and a missing one fails at startup:

- DATABASE_URL: a PostgreSQL URI or conninfo (unix-socket hosts included);
- AWS_ENDPOINT_URL: the S3 endpoint (the tests' moto server);
- MEDIASITE_PRIMARY_BUCKET: the bucket Django writes to (the media map's primary bucket);
- MEDIASITE_CDN_BUCKET: the bucket the CDN serves (the media map's CDN bucket);
- MEDIASITE_CDN_URL: where the CDN serves that bucket (``https://cdn.example.com``; locally the moto endpoint and
  the bucket, path style: ``http://127.0.0.1:5000/archive-cdn``);
- MEDIASITE_MEDIA_ROOT (optional): the site as it was before it moved to S3, its files in this directory through
  Django's FileSystemStorage (``mediacanon upload --from-media-root`` moves them).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict

SECRET_KEY = "django-insecure-acceptance-site"  # never serves a request: the tests drive the ORM and storages
DEBUG = False
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "mediasite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "storages",
    "archive_site.archive",  # PublicationSource(slug, name, masthead, icon), from sample/ (manage.py)
    "archive_site.tenants",  # the media map names its table too, so mediacanon's owner lookups query it
    "mediasite",  # the `drive` command the tests talk to
]


def _database(url: str) -> dict[str, Any]:
    params = conninfo_to_dict(url)
    known = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}
    db: dict[str, Any] = {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres"}
    db.update({setting: str(params[key]) for key, setting in known.items() if params.get(key) not in (None, "")})
    options = {k: v for k, v in params.items() if k not in known}
    if options:
        db["OPTIONS"] = options
    return db


DATABASES = {"default": _database(os.environ["DATABASE_URL"])}

# django-storages' S3 backend. Both storages share the endpoint and the settings below; they differ in bucket.
AWS_S3_ENDPOINT_URL = os.environ["AWS_ENDPOINT_URL"]
AWS_S3_REGION_NAME = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
AWS_S3_ADDRESSING_STYLE = "path"  # moto serves buckets under its one host
AWS_DEFAULT_ACL = None  # buckets with ACLs disabled: access comes from bucket policies, never object ACLs
AWS_S3_FILE_OVERWRITE = False  # a taken name gets Django's "_" + 7 random characters suffix
AWS_QUERYSTRING_AUTH = False  # public media: plain URLs

_cdn = urlsplit(os.environ["MEDIASITE_CDN_URL"])
STORAGES = {
    # where Django writes (the primary bucket); its URLs are the CDN's, so `.url` is what the site's pages show
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["MEDIASITE_PRIMARY_BUCKET"],
            "custom_domain": _cdn.netloc + _cdn.path.rstrip("/"),
            "url_protocol": _cdn.scheme + ":",
        },
    },
    # the bucket behind the CDN, read-only for the site: the tests ask it whether a key is served
    "cdn": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": os.environ["MEDIASITE_CDN_BUCKET"]},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

if os.environ.get("MEDIASITE_MEDIA_ROOT"):
    # before the move to S3: Django's own storage, files under MEDIA_ROOT, served by the site itself
    MEDIA_ROOT = os.environ["MEDIASITE_MEDIA_ROOT"]
    MEDIA_URL = "/media/"
    STORAGES["default"] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
