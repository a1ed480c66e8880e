"""Settings of the sample "Global Publication Archive", the acceptance client of mediacanon.

Everything that differs between machines comes from the environment:

- DATABASE_URL: a PostgreSQL URI or conninfo (``postgresql://postgres:@/postgres?host=/tmp/pg`` works too);
- AWS_ENDPOINT_URL: an S3 endpoint other than AWS (the local moto server);
- MEDIACANON_PRIMARY_BUCKET / MEDIACANON_LEGACY_BUCKET / MEDIACANON_CDN_BUCKET: the sample's buckets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

BASE_DIR = Path(__file__).resolve().parent.parent

# A development key: this project never runs in production.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-dev-only-sample-archive")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "storages",
    "archive_site.archive",
    "archive_site.tenants",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "archive_site.urls"
WSGI_APPLICATION = "archive_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_url(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for a PostgreSQL URI or key=value conninfo (unix-socket hosts included)."""
    params = conninfo_to_dict(url)
    known = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}
    db: dict[str, Any] = {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres"}
    for key, setting in known.items():
        if params.get(key) not in (None, ""):
            db[setting] = str(params[key])
    options = {k: v for k, v in params.items() if k not in known}
    if options:
        db["OPTIONS"] = options
    return db


DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", "postgresql://postgres@localhost:5432/archive"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Media: django-storages' S3 backend, as the archive runs it in production.
PRIMARY_BUCKET = os.environ.get("MEDIACANON_PRIMARY_BUCKET", "archive-media")
LEGACY_BUCKET = os.environ.get("MEDIACANON_LEGACY_BUCKET", "archive-legacy")  # read-only source of old files
CDN_BUCKET = os.environ.get("MEDIACANON_CDN_BUCKET", "archive-cdn")  # the bucket the CDN watches

STORAGES = {
    "default": {"BACKEND": "storages.backends.s3.S3Storage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
AWS_STORAGE_BUCKET_NAME = PRIMARY_BUCKET
AWS_S3_ENDPOINT_URL = os.environ.get("AWS_ENDPOINT_URL") or None
AWS_S3_REGION_NAME = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
AWS_S3_ADDRESSING_STYLE = "path"
AWS_S3_FILE_OVERWRITE = False  # a taken name gets Django's "_" + 7 random characters suffix
AWS_DEFAULT_ACL = None  # modern buckets disable ACLs; access is granted by bucket policy
AWS_QUERYSTRING_AUTH = False

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
