"""`manage.py upload`: save files through the Publication model's ImageFields, as an upload form does.

Reads a JSON list on stdin, ``[{"slug": "nytimes", "field": "icon", "filename": "NYTimes Icon.png", "content":
"<base64>"}, ...]`` (a slug's row is created at its first file), and writes the names Django stored, one JSON list.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand

from canonsite.models import Publication


class Command(BaseCommand):  # type: ignore[misc]  # no django-stubs: BaseCommand is Any
    help = "Save files (a JSON list on stdin) through Publication's ImageFields; print the stored names"

    def handle(self, *args: Any, **options: Any) -> None:
        stored = []
        for item in json.load(sys.stdin):
            row = Publication.objects.filter(slug=item["slug"]).first() or Publication(slug=item["slug"])
            content = ContentFile(base64.b64decode(item["content"]))
            getattr(row, item["field"]).save(item["filename"], content, save=True)
            stored.append(getattr(row, item["field"]).name)
        sys.stdout.write(json.dumps(stored) + "\n")
