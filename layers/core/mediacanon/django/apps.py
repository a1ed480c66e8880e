"""The `mediacanon.django` app: ``INSTALLED_APPS = [..., "mediacanon.django"]`` adds Django system checks (checks.py)
that flag each setting that fights mediacanon (``manage.py check --tag mediacanon``). It has no models."""

from __future__ import annotations

from django.apps import AppConfig


class MediacanonConfig(AppConfig):  # type: ignore[misc]  # no django-stubs: AppConfig is Any
    name = "mediacanon.django"
    label = "mediacanon"
    verbose_name = "mediacanon"

    def ready(self) -> None:
        from django.core import checks

        from mediacanon.django.checks import TAG, check_settings

        checks.register(check_settings, TAG)
