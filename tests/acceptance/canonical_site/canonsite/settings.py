"""Settings of the canonical site: django-storages' S3 backend on the tests' emulator, URLs on the CDN's domain, every
setting as mediacanon wants it (its system checks pass), the media map from MEDIACANON_CONFIG.

From the environment (a missing one fails at startup): DATABASE_URL, AWS_ENDPOINT_URL, CANONSITE_PRIMARY_BUCKET,
CANONSITE_CDN_URL (where the CDN serves the CDN bucket) and CANONSITE_MEDIAMAP (the media map's path).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict

SECRET_KEY = "django-insecure-canonical-site"  # never serves a request
DEBUG = False
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["storages", "mediacanon.django", "canonsite"]

_db = conninfo_to_dict(os.environ["DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": str(_db.get("dbname") or "postgres"),
        "USER": str(_db.get("user") or ""),
        "PASSWORD": str(_db.get("password") or ""),
        "HOST": str(_db.get("host") or ""),
        "PORT": str(_db.get("port") or ""),
    }
}

MEDIACANON_CONFIG = os.environ["CANONSITE_MEDIAMAP"]

AWS_S3_ENDPOINT_URL = os.environ["AWS_ENDPOINT_URL"]
AWS_S3_REGION_NAME = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
AWS_S3_ADDRESSING_STYLE = "path"
AWS_DEFAULT_ACL = None  # W001: buckets with ACLs disabled
AWS_S3_FILE_OVERWRITE = False  # W003: the media map's collision policy is keep-both
AWS_QUERYSTRING_AUTH = False  # W002: URLs on the CDN's domain

_cdn = urlsplit(os.environ["CANONSITE_CDN_URL"])
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["CANONSITE_PRIMARY_BUCKET"],
            "custom_domain": _cdn.netloc + _cdn.path.rstrip("/"),
            "url_protocol": _cdn.scheme + ":",
        },
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
