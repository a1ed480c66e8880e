from django.apps import AppConfig


class ArchiveConfig(AppConfig):
    name = "archive_site.archive"
    label = "archive"
    verbose_name = "Publication archive"
