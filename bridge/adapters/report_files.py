"""Files for people to open, written so that a reader never sees half of one: to a temporary
file in the same folder, flushed to disk, then renamed over the old one, with the mode asked for
set on the file itself (the writing process's umask does not narrow it). Folders made on the way
get the matching search bits, so whoever may read the files may enter the folder."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def folder_mode(file_mode: int) -> int:
    """The mode of a folder holding files of `file_mode`: whoever may read a file may enter
    the folder (0640 -> 0750, 0644 -> 0755, 0600 -> 0700)."""
    search = 0
    for read, execute in ((0o400, 0o100), (0o040, 0o010), (0o004, 0o001)):
        if file_mode & read:
            search |= execute
    return (file_mode | search) & 0o777 | 0o700


def make_folder(folder: Path, mode: int) -> None:
    """Create `folder` and any missing parents with `mode`, set exactly (the umask aside); an
    existing `folder` gets it too. A set-group-ID bit a folder has (inherited from a shared
    reports folder, so that files get the readers' group) is kept."""
    missing = []
    at = folder
    while not at.exists():
        missing.append(at)
        at = at.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        _set_mode(path, mode)
    _set_mode(folder, mode)


def _set_mode(folder: Path, mode: int) -> None:
    os.chmod(folder, mode | (folder.stat().st_mode & stat.S_ISGID))


def write_atomically(path: Path, data: bytes, mode: int) -> Path:
    """Write `data` to `path` with `mode`: to a temporary file in the same folder, flushed to
    disk, then renamed over `path` (a reader sees the old file or the new one, never half)."""
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            # mkstemp makes the file for its owner only; a report is for the group too.
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path
