"""The acceptance site's settings (tests/acceptance/django_site/mediasite/settings.py) with the mediacanon app
installed, and the settings of one case of tests/integration/test_django_checks.py on top.

CANONSITE_OVERRIDES is a JSON object of settings to set: ``{"AWS_DEFAULT_ACL": "public-read"}``; a dotted name sets
inside a dict, ``{"STORAGES.default.OPTIONS.location": "media"}``; null deletes (``{"AWS_QUERYSTRING_AUTH": null}``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from mediasite.settings import *  # noqa: F403
from mediasite.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "mediacanon.django"]


def _override(settings: dict[str, Any], overrides: dict[str, Any]) -> None:
    for dotted, value in overrides.items():
        *path, name = dotted.split(".")
        target = settings
        for part in path:
            target = target.setdefault(part, {})
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value


_override(globals(), json.loads(os.environ.get("CANONSITE_OVERRIDES", "{}")))
