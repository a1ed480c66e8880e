"""mediacanon on the Django side: the part a Django project installs (`pip install mediacanon[django]`).

- `canonical_upload_to`: an `upload_to` callable that reads the media map, so new uploads arrive under their
  canonical key and the live path only mirrors and links them;
- `FallbackStorage`: a storage that chains backends (writes to the first only; reads fall through to the rest), for a
  QA or laptop copy of production that reads production media without copying or writing it;
- the `mediacanon.django` app: Django system checks that flag each setting that fights mediacanon;
- `mediacanon init` (mediacanon.django.introspect): the media map written from the project's models.

Nothing here is imported by the Lambda functions, and the layer does not ship it (layers/core/Makefile); Django is
imported only when one of these names is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FallbackStorage", "canonical_upload_to"]


def __getattr__(name: str) -> Any:
    # lazy: `INSTALLED_APPS = ["mediacanon.django"]` imports this package before Django's settings are ready
    if name == "canonical_upload_to":
        from mediacanon.django.upload_to import canonical_upload_to

        return canonical_upload_to
    if name == "FallbackStorage":
        from mediacanon.django.storage import FallbackStorage

        return FallbackStorage
    raise AttributeError(f"module 'mediacanon.django' has no attribute {name!r}")
