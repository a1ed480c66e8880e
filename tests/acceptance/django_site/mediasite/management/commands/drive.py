"""`manage.py drive`: the running site, as the acceptance tests see it. One JSON request a line on stdin
(``{"op": "save", ...}``), one JSON answer a line on stdout. The process lives through a whole test, so the model
instances it holds are the ones a long-running Django process would hold while mediacanon renames their files:
`refresh` calls ``refresh_from_db()`` on them, as a site would.
"""

from __future__ import annotations

import base64
import json
import sys
import traceback
from typing import Any

import django
from archive_site.archive.models import PublicationSource
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.core.management.base import BaseCommand
from django.db.models.fields.files import FieldFile

FIELDS = ("icon", "masthead")


def _file(ff: FieldFile) -> dict[str, Any]:
    """A file column as Django sees it: its name, whether the storage and the CDN bucket hold it, its URL."""
    if not ff:
        return {"name": ff.name, "exists": None, "cdn_exists": None, "url": None}
    return {
        "name": ff.name,
        "exists": ff.storage.exists(ff.name),
        "cdn_exists": storages["cdn"].exists(ff.name),
        "url": ff.url,
    }


class Site:
    def __init__(self) -> None:
        self.held: dict[str, PublicationSource] = {}  # by slug: the instances this process keeps in memory

    def _state(self, obj: PublicationSource) -> dict[str, Any]:
        return {field: _file(getattr(obj, field)) for field in FIELDS}

    def version(self) -> str:
        return str(django.get_version())  # django has no stubs here: Any

    def save(self, slug: str, field: str, filename: str, content: str) -> dict[str, Any]:
        """The site's upload form: the held instance (or a new row) gets the file through FieldFile.save()."""
        obj = self.held.get(slug) or PublicationSource(slug=slug, name=slug.replace("-", " ").title())
        getattr(obj, field).save(filename, ContentFile(base64.b64decode(content)), save=True)
        self.held[slug] = obj
        return self._state(obj)

    def load(self, slug: str) -> dict[str, Any]:
        self.held[slug] = PublicationSource.objects.get(slug=slug)
        return self._state(self.held[slug])

    def refresh(self, slug: str) -> dict[str, Any]:
        obj = self.held[slug]
        obj.refresh_from_db()
        return self._state(obj)

    def delete_file(self, slug: str, field: str) -> dict[str, Any]:
        """FieldFile.delete(): Django deletes the object from the storage, then saves the row without it."""
        obj = self.held[slug]
        getattr(obj, field).delete(save=True)
        return self._state(obj)

    def exists(self, name: str, storage: str = "default") -> bool:
        return bool(storages[storage].exists(name))

    def read(self, name: str, storage: str = "default") -> str:
        with storages[storage].open(name, "rb") as f:
            return base64.b64encode(f.read()).decode()

    def listdir(self, path: str, storage: str = "default") -> dict[str, list[str]]:
        dirs, files = storages[storage].listdir(path)
        return {"dirs": sorted(dirs), "files": sorted(files)}

    def url(self, name: str) -> str:
        return str(default_storage.url(name))


class Command(BaseCommand):  # type: ignore[misc]  # no django-stubs: BaseCommand is Any
    help = "Answer the acceptance tests' requests (JSON lines on stdin) as the running site"

    def handle(self, *args: Any, **options: Any) -> None:
        site = Site()
        for line in sys.stdin:
            request = json.loads(line)
            op = request.pop("op")
            try:
                answer = {"ok": True, "result": getattr(site, op)(**request)}
            except Exception:  # any failure goes back to the test, which fails with Django's traceback
                answer = {"ok": False, "error": traceback.format_exc()}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
