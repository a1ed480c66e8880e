"""`FallbackStorage`: a Django storage that chains backends (the "hybrid storage" pattern).

Writes (`save`, `open` for writing) go to the first backend only: the environment's own storage. Reads (`open`,
`exists`, `size`, `url`, `path`, `get_*_time`) try each backend in order and use the first that has the file;
`listdir` merges every backend's listing. `delete` reaches only the writable backends (by default only the first);
a read-only backend is never written or deleted from.

Names: `get_available_name` treats a name held by ANY backend other than the first as taken, so an upload never
shadows a production file; a name only the first backend holds follows that backend's own rule (django-storages'
`file_overwrite`, Django's `FileSystemStorage(allow_overwrite=True)`): overwritten when it overwrites, else renamed.

Access denied: S3 answers 403, not 404, to a HeadObject for a missing key when the caller lacks s3:ListBucket. On a
read-only backend a 403 (botocore ClientError with HTTP status 403, or PermissionError) counts as "not there" (logged
as a warning the first time per backend) so a page still renders; `denied_is_missing=False` turns that off. On a
writable backend errors are never swallowed. Other errors (network, 5xx) always propagate.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeAlias, TypeVar

from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.core.files.utils import validate_file_name
from django.utils.deconstruct import deconstructible
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)

T = TypeVar("T")
BackendSpec: TypeAlias = "str | Mapping[str, Any] | Storage"
WRITE_MODES = frozenset("wax+")


def is_access_denied(exc: BaseException) -> bool:
    """A 403 from S3 (botocore's ClientError carries `response`) or a PermissionError from a local backend."""
    if isinstance(exc, PermissionError):
        return True
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code")
    return status == 403 or code in ("403", "AccessDenied", "Forbidden")


def overwrites(backend: Storage) -> bool:
    """Whether the backend reuses a taken name (django-storages' file_overwrite, Django 5.1+'s allow_overwrite)."""
    if hasattr(backend, "file_overwrite"):
        return bool(backend.file_overwrite)
    return bool(getattr(backend, "_allow_overwrite", False))


@deconstructible(path="mediacanon.django.FallbackStorage")
class FallbackStorage(Storage):  # type: ignore[misc]  # django ships no type hints (no django-stubs here)
    """Chains backends: `backends` lists STORAGES aliases, inline `{"BACKEND": ..., "OPTIONS": {...}}` dicts or
    Storage instances, first the environment's own. `read_only` lists the backends (alias or position) that are
    never deleted from; default: all but the first. The first backend must be writable."""

    def __init__(
        self,
        backends: Sequence[BackendSpec] | None = None,
        read_only: Sequence[int | str] | None = None,
        denied_is_missing: bool = True,
    ) -> None:
        if not backends:
            raise ImproperlyConfigured("FallbackStorage needs OPTIONS['backends']: a list of STORAGES aliases or dicts")
        for spec in backends:
            if isinstance(spec, Mapping):
                unknown: set[str] = set(spec) - {"BACKEND", "OPTIONS"}
                if "BACKEND" not in spec or unknown:
                    raise ImproperlyConfigured(
                        f"FallbackStorage backend {dict(spec)!r}: give BACKEND (and optionally OPTIONS) only"
                    )
            elif not isinstance(spec, (str, Storage)):
                raise ImproperlyConfigured(f"FallbackStorage backend {spec!r}: an alias, a dict or a Storage")
        self._specs = list(backends)
        aliases = {spec: i for i, spec in enumerate(self._specs) if isinstance(spec, str)}
        if read_only is None:
            self._read_only = set(range(1, len(self._specs)))
        else:
            positions: set[int] = set()
            for entry in read_only:
                if isinstance(entry, str):
                    if entry not in aliases:
                        raise ImproperlyConfigured(f"FallbackStorage read_only names {entry!r}, not one of the backends")
                    positions.add(aliases[entry])
                elif isinstance(entry, int) and 0 <= entry < len(self._specs):
                    positions.add(entry)
                else:
                    raise ImproperlyConfigured(f"FallbackStorage read_only entry {entry!r}: an alias or a position")
            self._read_only = positions
        if 0 in self._read_only:
            raise ImproperlyConfigured("FallbackStorage: the first backend takes the writes and cannot be read-only")
        self._denied_is_missing = denied_is_missing
        self._resolved: list[Storage] | None = None
        self._resolving = False
        self._warned: set[int] = set()

    # the backends, resolved at first use (STORAGES aliases need the settings ready)

    @property
    def backends(self) -> list[Storage]:
        if self._resolved is None:
            if self._resolving:
                raise ImproperlyConfigured("FallbackStorage: a backend refers back to this storage")
            self._resolving = True
            try:
                self._resolved = [self._resolve(spec) for spec in self._specs]
            finally:
                self._resolving = False
        return self._resolved

    def _resolve(self, spec: BackendSpec) -> Storage:
        if isinstance(spec, Storage):
            backend = spec
        elif isinstance(spec, str):
            from django.core.files.storage import storages

            backend = storages[spec]
        else:
            backend = import_string(spec["BACKEND"])(**dict(spec.get("OPTIONS", {})))
        if backend is self:
            raise ImproperlyConfigured(f"FallbackStorage: backend {spec!r} is this storage itself")
        return backend

    @property
    def writable(self) -> list[Storage]:
        return [b for i, b in enumerate(self.backends) if i not in self._read_only]

    def _probe(self, index: int, call: Callable[[], T], missing: T) -> T:
        """Run a read on one backend; a denial from a read-only backend answers `missing`."""
        try:
            return call()
        except Exception as exc:
            if index in self._read_only and self._denied_is_missing and is_access_denied(exc):
                level = logging.DEBUG if index in self._warned else logging.WARNING
                self._warned.add(index)
                log.log(
                    level, "read-only backend %d (%r) denied access: treated as not there: %s", index, self._specs[index], exc
                )
                return missing
            raise

    def _owner(self, name: str) -> Storage | None:
        for index, backend in enumerate(self.backends):
            if self._probe(index, partial(_exists, backend, name), False):
                return backend
        return None

    def _owner_or_missing(self, name: str) -> Storage:
        backend = self._owner(name)
        if backend is None:
            raise FileNotFoundError(f"File does not exist in any backend: {name}")
        return backend

    # reads

    def _open(self, name: str, mode: str = "rb") -> File:
        if WRITE_MODES & set(mode):
            return self.backends[0].open(name, mode)
        for index, backend in enumerate(self.backends):
            try:
                return backend.open(name, mode)
            except FileNotFoundError:
                continue
            except Exception as exc:
                if index in self._read_only and self._denied_is_missing and is_access_denied(exc):
                    self._probe(index, partial(_raise, exc), None)
                    continue
                raise
        raise FileNotFoundError(f"File does not exist in any backend: {name}")

    def exists(self, name: str) -> bool:
        return self._owner(name) is not None

    def size(self, name: str) -> int:
        return int(self._owner_or_missing(name).size(name))

    def url(self, name: str | None) -> str:
        """The URL of the first backend that has the file; when none before the last does, the last one's URL
        (no request to it: a URL needs no lookup, and Django's own url() does not check existence either)."""
        backends = self.backends
        for index, backend in enumerate(backends[:-1]):
            if name and self._probe(index, partial(_exists, backend, name), False):
                return str(backend.url(name))
        return str(backends[-1].url(name))

    def path(self, name: str) -> str:
        """The local path of the first backend that has the file (NotImplementedError when that one is not local);
        of the first backend (where a write would go) when none has it."""
        backend = self._owner(name) or self.backends[0]
        return str(backend.path(name))

    def get_modified_time(self, name: str) -> datetime:
        moment: datetime = self._owner_or_missing(name).get_modified_time(name)
        return moment

    def get_accessed_time(self, name: str) -> datetime:
        moment: datetime = self._owner_or_missing(name).get_accessed_time(name)
        return moment

    def get_created_time(self, name: str) -> datetime:
        moment: datetime = self._owner_or_missing(name).get_created_time(name)
        return moment

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        """Every backend's listing merged (each name once, sorted); FileNotFoundError only when no backend has it."""
        directories: set[str] = set()
        files: set[str] = set()
        found = False
        for index, backend in enumerate(self.backends):
            try:
                listing = self._probe(index, partial(_listdir, backend, path), None)
            except FileNotFoundError:
                continue
            if listing is None:
                continue
            found = True
            directories.update(listing[0])
            files.update(listing[1])
        if not found:
            raise FileNotFoundError(f"Directory does not exist in any backend: {path}")
        return sorted(directories), sorted(files)

    # writes

    def _save(self, name: str, content: File) -> str:
        return str(self.backends[0].save(name, content))

    def delete(self, name: str) -> None:
        """Deletes from the writable backends only; a read-only backend's copy stays (and still reads)."""
        for backend in self.writable:
            backend.delete(name)

    def get_valid_name(self, name: str) -> str:
        return str(self.backends[0].get_valid_name(name))

    def is_name_available(self, name: str, max_length: int | None = None) -> bool:
        if max_length and len(name) > max_length:
            return False
        first, *rest = list(enumerate(self.backends))
        for index, backend in rest:
            if self._probe(index, partial(_exists, backend, name), False):
                return False
        return overwrites(first[1]) or not first[1].exists(name)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """Django's loop (4.2 to 6.0), asking is_name_available: a name any later backend holds is always taken."""
        name = str(name).replace("\\", "/")
        dir_name, file_name = os.path.split(name)
        if ".." in pathlib.PurePath(dir_name).parts:
            raise SuspiciousFileOperation(f"Detected path traversal attempt in '{dir_name}'")
        validate_file_name(file_name)
        file_ext = "".join(pathlib.PurePath(file_name).suffixes)
        file_root = file_name.removesuffix(file_ext)
        while not self.is_name_available(name, max_length=max_length):
            name = os.path.join(dir_name, Storage.get_alternative_name(self, file_root, file_ext))
            if max_length is None:
                continue
            truncation = len(name) - max_length
            if truncation > 0:
                file_root = file_root[:-truncation]
                if not file_root:
                    raise SuspiciousFileOperation(
                        f'Storage can not find an available filename for "{name}". '
                        'Please make sure that the corresponding file field allows sufficient "max_length".'
                    )
                name = os.path.join(dir_name, Storage.get_alternative_name(self, file_root, file_ext))
        return name


def _raise(exc: BaseException) -> None:
    raise exc


def _exists(backend: Storage, name: str) -> bool:
    return bool(backend.exists(name))


def _listdir(backend: Storage, path: str) -> tuple[list[str], list[str]] | None:
    directories, files = backend.listdir(path)
    return list(directories), list(files)


__all__ = ["FallbackStorage", "is_access_denied", "overwrites"]
