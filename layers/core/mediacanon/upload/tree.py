"""The local side: walking a staging tree, at any depth, into its regular files."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mediacanon.upload.outcomes import Item, Outcome, display_path


@dataclass(frozen=True)
class LocalFile:
    path: str  # as the OS names it
    rel: str  # relative to the walked root, '/'-separated, valid UTF-8


def walk(root: Path) -> Iterator[LocalFile | Item]:
    """Every regular file under `root`, at any depth, in name order; an Item for what cannot be one.

    A folder where a file was expected (`google_favicon/`) is descended into, never opened. Symlinks are
    followed, and one that leads back to a folder being walked is reported as a loop instead of walked forever.
    """
    try:
        top = os.stat(root)
    except OSError as exc:
        yield Item(display_path(root), Outcome.INVALID, f"cannot be read: {exc.strerror} (fix: pass an existing folder)")
        return
    if not stat.S_ISDIR(top.st_mode):
        yield Item(display_path(root), Outcome.INVALID, "is not a folder (fix: pass the folder holding the staging tree)")
        return
    yield from _walk(str(root), "", ((top.st_dev, top.st_ino),))


def _walk(path: str, rel: str, ancestors: tuple[tuple[int, int], ...]) -> Iterator[LocalFile | Item]:
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        yield Item(display_path(path), Outcome.INVALID, f"folder cannot be read: {exc.strerror} (fix: check its permissions)")
        return
    for entry in entries:
        shown = display_path(entry.path)
        try:
            entry.name.encode("utf-8")
        except UnicodeEncodeError:
            yield Item(
                shown,
                Outcome.INVALID,
                "name is not valid UTF-8, so it cannot be an S3 key (fix: rename it, e.g. `convmv -f latin1 -t utf8`)",
            )
            continue
        try:
            st = os.stat(entry.path)  # follows symlinks
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                yield Item(shown, Outcome.INVALID, "symlink loop (fix: remove or repoint the link)")
            elif exc.errno == errno.ENOENT:
                yield Item(shown, Outcome.INVALID, "dangling symlink: its target does not exist (fix: remove the link)")
            else:
                yield Item(shown, Outcome.INVALID, f"cannot be read: {exc.strerror}")
            continue
        child_rel = f"{rel}{entry.name}"
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                yield Item(shown, Outcome.INVALID, "symlink loop: leads back to a folder it is inside (fix: remove the link)")
                continue
            yield from _walk(entry.path, child_rel + "/", (*ancestors, ident))
        elif stat.S_ISREG(st.st_mode):
            yield LocalFile(entry.path, child_rel)
        else:
            yield Item(shown, Outcome.INVALID, "not a regular file (a FIFO, socket or device)")
