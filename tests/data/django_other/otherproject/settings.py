"""Settings of the second test project: nothing here connects anywhere (init reads the models and storages only)."""

SECRET_KEY = "django-insecure-init-test"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["storages", "ledger"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

AWS_S3_REGION_NAME = "eu-west-1"
STORAGES = {
    # most fields: the bucket the media map's primary is
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": "ledger-media", "location": "media", "custom_domain": "media.ledger.example"},
    },
    # signed documents: another bucket, another location (ledger.storage.documents_storage hands it to the field)
    "documents": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": "ledger-documents", "location": "private/"},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
