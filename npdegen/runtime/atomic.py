"""Atomic file writes: a temporary file in the same folder, fsync, rename.

Readers never see a partial file, also with many writers; temporaries left by a killed writer are
removed once they are :data:`STALE_SECONDS` old. Used for kernels (the cache, ``generate``) and
training checkpoints.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["write_atomic", "STALE_SECONDS"]

#: Age after which a leftover temporary file of ours is removed.
STALE_SECONDS = 600
_UID = os.getuid() if hasattr(os, "getuid") else None
_umask_lock = threading.Lock()


def _foreign(st) -> bool:
    return _UID is not None and st.st_uid != _UID


def _clean_stale(folder: Path, prefix: str = ".") -> None:
    """Remove this user's temporaries ``<prefix>….tmp`` older than :data:`STALE_SECONDS`."""
    cutoff = time.time() - STALE_SECONDS
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and not _foreign(st) and st.st_mtime < cutoff:
                        os.unlink(entry.path)


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else by
    setting and restoring it under a lock (``os.umask`` can only be read by setting it)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _file_mode(mode) -> int | None:
    if mode is None:
        return None
    if mode == "umask":
        return 0o666 & ~_umask()
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValueError(f"mode must be None, 'umask' or permission bits 0..0o777, got {mode!r}")
    return mode


def write_atomic(path: Path, data, mode: int | str | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    ``data`` is text, bytes, or a function that writes into the binary file object it is given.
    ``mode``: the file's permission bits — ``None`` (default) keeps the private ``0600`` of the
    temporary file (the kernel cache), ``"umask"`` gives ``0666`` less the process's umask like
    ``open()`` would (``0644`` under the usual umask 022; files written for the user, e.g.
    ``generate --out``), an int gives exactly those bits. The bits are set on the temporary file
    before the rename, so the file never appears with other permissions. Temporaries of earlier
    writes of ``path`` older than :data:`STALE_SECONDS` (a killed writer's) are removed.
    """
    bits = _file_mode(mode)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, cannot write a file there")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            if bits is not None:
                os.fchmod(fh.fileno(), bits) if hasattr(os, "fchmod") else os.chmod(tmp, bits)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _clean_stale(path.parent, f".{path.name}.")
    return path
