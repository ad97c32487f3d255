"""The on-disk cache of generated tasks: one ``.npz`` per (task, sizes, seed, settings), written atomically.

Folder: ``$NPDEGEN_TASK_DIR`` if set, else ``$XDG_CACHE_HOME/npdegen/tasks`` or
``~/.cache/npdegen/tasks``. A file holds the arrays, the request they answer (``__meta__``, JSON:
name, sizes, seed, generator version and every setting) and a SHA-256 over the request and the
arrays' dtypes, shapes and bytes (``__sha256__``). It is written to a temporary file and renamed
(:func:`npdegen.runtime.atomic.write_atomic`), so readers never see a partial file. On reading,
a file that cannot be opened, answers another request, misses an array, fails the checksum or
holds non-finite values is not trusted: :func:`load` returns ``None`` (and warns), and the task is
generated again and the file replaced. Files are read with ``allow_pickle=False``: nothing in
them is executed.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..runtime.atomic import write_atomic

__all__ = ["task_dir", "cache_path", "save", "load", "TaskCacheWarning"]

META, DIGEST = "__meta__", "__sha256__"


class TaskCacheWarning(RuntimeWarning):
    """A cached task file was unreadable or failed its checks and is regenerated."""


def task_dir() -> Path:
    """The task cache folder (module docstring)."""
    env = os.environ.get("NPDEGEN_TASK_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "npdegen" / "tasks"


def _canonical(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def cache_path(folder: Path, meta: dict) -> Path:
    """``<name>-n<n>-train<k>-test<m>-seed<s>-<hash of the settings>.npz`` in ``folder``."""
    tag = hashlib.sha256(_canonical(meta).encode()).hexdigest()[:12]
    return Path(folder) / (f"{meta['name']}-n{meta['n']}-train{meta['n_train']}-test{meta['n_test']}"
                           f"-seed{meta['seed']}-{tag}.npz")


def _digest(meta_json: str, arrays: dict) -> str:
    h = hashlib.sha256(meta_json.encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"|{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path: Path, meta: dict, arrays: dict) -> Path:
    """Write ``arrays`` (names without leading underscores) with ``meta`` and their checksum, atomically."""
    meta_json = _canonical(meta)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    extra = {META: np.array(meta_json), DIGEST: np.array(_digest(meta_json, arrays))}
    return write_atomic(Path(path), lambda fh: np.savez(fh, **arrays, **extra), mode="umask")


def load(path: Path, meta: dict, keys) -> dict | None:
    """The arrays ``keys`` of the file at ``path`` if it exists and passes every check, else ``None``."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
        meta_json = str(stored.pop(META))
        digest = str(stored.pop(DIGEST))
        problem = None
        if meta_json != _canonical(meta):
            problem = "it answers another request"
        elif set(stored) != set(keys):
            problem = f"it holds arrays {sorted(stored)}, expected {sorted(keys)}"
        elif digest != _digest(meta_json, stored):
            problem = "its checksum does not match"
        elif not all(np.all(np.isfinite(a)) for a in stored.values()):
            problem = "it holds non-finite values"
    except Exception as exc:              # any unreadable file (truncated zip, bad header, …) is regenerated
        problem = f"it cannot be read ({type(exc).__name__}: {exc})"
    if problem:
        warnings.warn(f"task cache file {path}: {problem}; generating the task again", TaskCacheWarning, stacklevel=3)
        return None
    return stored
