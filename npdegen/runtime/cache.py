"""The kernel cache: rendered sources stored by content hash, written atomically, loaded verified.

Location: ``$NPDEGEN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/npdegen`` or ``~/.cache/npdegen``.
Every file carries, in its first lines, the content key and a SHA-256 of the rest of the file;
:func:`load_module` refuses a file whose checksum does not match (it is then regenerated), so a
truncated or edited file is never imported. Writes go to a temporary file in the same folder
followed by :func:`os.replace`, so readers never see a partial file, also with many writers.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["cache_dir", "write_atomic", "stamp", "verify", "load_module", "cache_info", "clear_cache", "CHECKSUM_TAG"]

CHECKSUM_TAG = "npdegen-body-sha256: "
#: Line-comment markers by file suffix (the checksum line must be a comment in the file's language).
_COMMENT = {".py": "#", ".cu": "//", ".c": "//", ".h": "//"}
_modules: dict[str, object] = {}
_lock = threading.Lock()


def cache_dir() -> Path:
    """The cache folder, created with user-only permissions."""
    env = os.environ.get("NPDEGEN_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "npdegen"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def stamp(source: str, suffix: str = ".py") -> str:
    """Prefix ``source`` with the checksum line of its body, a comment in the file's language."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    return f"{_COMMENT.get(suffix, '#')} {CHECKSUM_TAG}{digest}\n{source}"


def verify(text: str) -> bool:
    """True if ``text`` starts with a checksum line (``# …`` or ``// …``) matching the rest."""
    first, _, body = text.partition("\n")
    for marker in ("# ", "// "):
        if first.startswith(marker + CHECKSUM_TAG):
            return first[len(marker + CHECKSUM_TAG):] == hashlib.sha256(body.encode()).hexdigest()
    return False


def write_atomic(path: Path, data) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    ``data`` is text, bytes, or a function that writes into the binary file object it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_module(key: str, stem: str, make_files, suffixes=(".py",)) -> object:
    """Import the cached module ``<stem>.py`` (content key ``key``), writing its files first if any
    of ``suffixes`` is absent or any file fails its checksum.

    ``make_files()`` returns ``{suffix: stamped text}`` (``".py"`` plus e.g. ``".cu"``); it is
    called only when a cached file is missing or bad. Every file is verified before the import.
    """
    with _lock:
        if key in _modules:
            return _modules[key]
        folder = cache_dir()
        texts = {}
        for path in folder.glob(f"{stem}.*"):
            if not path.name.endswith(".tmp"):
                texts[path.suffix] = path.read_text(encoding="utf-8")
        good = set(suffixes) <= set(texts) and all(verify(t) for t in texts.values()) and key in texts[".py"]
        if not good:
            texts = make_files()
            for suffix, text in texts.items():
                write_atomic(folder / f"{stem}{suffix}", text)
        path = folder / f"{stem}.py"
        name = f"npdegen_kernel_{key[:16]}"
        spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
        module = importlib.util.module_from_spec(spec)
        module.__file__ = str(path)
        # Execute the text that was verified, not whatever the file holds by now.
        exec(compile(texts[".py"], str(path), "exec"), module.__dict__)  # noqa: S102 - our own verified code
        sys.modules[name] = module
        _modules[key] = module
        return module


def _entries(folder: Path):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(tuple("abcdefghijklmnopqrstuvwxyz"
                                                                                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")))


def cache_info() -> dict:
    """Folder, number of files, bytes, and files failing their checksum (they will be regenerated)."""
    folder = cache_dir()
    files = _entries(folder)
    bad = [p.name for p in files if not verify(p.read_text(encoding="utf-8", errors="replace"))]
    return {"folder": str(folder), "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "corrupt": bad}


def clear_cache() -> int:
    """Delete npdegen's files (those carrying its checksum line) from the cache; returns how many."""
    removed = 0
    for path in _entries(cache_dir()):
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            ours = CHECKSUM_TAG in fh.readline()
        if ours:
            path.unlink(missing_ok=True)
            removed += 1
    with _lock:
        _modules.clear()
    return removed
