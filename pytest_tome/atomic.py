"""Write a file whole or not at all; shared by the baselines and the report.

The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target, so a reader sees the old file or the new one, never half of either. A save that
was killed between the two steps leaves its temporary file behind; the next write into the
same folder removes those once they are old enough that no live writer can own them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path

# A live writer holds its temporary file for milliseconds; one this old was left by a crash.
STALE_AFTER_S = 600.0
# .<target name>.<pid>.<8 hex>.tmp: only files this module made are ever removed.
_TEMPORARY = re.compile(r"^\..+\.[0-9]+\.[0-9a-f]{8}\.tmp$")


def write_atomic(path: Path | str, data: bytes) -> Path:
    """Replace `path` with `data` atomically and durably; raises OSError, leaving no temp file.

    The new file's mode follows the umask, as a plain `open()` would (not mkstemp's 0600).
    """
    path = Path(path)
    remove_stale_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def remove_stale_temporaries(
    folder: Path | str, older_than_s: float = STALE_AFTER_S, now: float | None = None
) -> list[Path]:
    """Delete this module's temporary files in `folder` older than `older_than_s`; list them."""
    now = time.time() if now is None else now
    removed = []
    with contextlib.suppress(OSError):  # a folder we cannot list: the write itself will say
        for entry in os.scandir(folder):
            if not _TEMPORARY.match(entry.name):
                continue
            with contextlib.suppress(OSError):  # another writer may remove it first
                if now - entry.stat(follow_symlinks=False).st_mtime > older_than_s:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the OS allows opening a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
