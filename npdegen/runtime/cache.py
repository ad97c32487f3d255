"""The kernel cache: rendered sources stored by content hash, written atomically, loaded verified.

Location: ``$NPDEGEN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/npdegen`` or ``~/.cache/npdegen``.
Writes go to a temporary file in the same folder followed by :func:`os.replace`, so readers never
see a partial file, also with many writers; temporaries left by a killed writer are removed once
they are :data:`STALE_SECONDS` old.

Trust. Importing a cached kernel runs it, so the cache may only hold code that this user's npdegen
wrote. Three checks, all before anything is executed:

1. **A private folder.** The folder must be a directory owned by the current user and not
   writable by group or others. One that is not (a shared ``0777`` folder, someone else's) is not
   used: npdegen warns once and falls back to ``~/.cache/npdegen`` if that one is private, else to
   a fresh private temporary folder for this process. numba's own cache, whose pickled index
   files (``__pycache__/*.nbi``) numba unpickles without any check, is kept inside this folder:
   ``__pycache__`` is created here with mode 0700 (files in it that belong to another user are
   deleted), and while a kernel module runs its ``@njit(cache=True)`` decorators numba's
   ``NUMBA_CACHE_DIR`` is set aside, so numba's in-tree locator puts its files in that checked
   ``__pycache__``, never in a user-wide or shared numba folder.
2. **A checksum** (line 1, ``npdegen-body-sha256``, also on the files ``generate`` writes)
   detects truncated or accidentally edited files. It is not a defence against a forger: anyone
   can recompute a SHA-256 of a body they wrote.
3. **An HMAC** (line 2 of a cached file, ``npdegen-hmac-sha256``): HMAC-SHA256, under a per-user
   secret key, of the file's name and body. The key is 32 random bytes in ``<folder>/.npdegen-key``,
   created once with mode 0600 (written to a private temporary file, then linked into place, so
   concurrent creators agree on one key) and used only while it is a regular file owned by the
   user with no group or other permission bits (otherwise it is replaced, which invalidates every
   cached kernel). A kernel whose body *and* both header lines were replaced by someone who cannot
   read the key, e.g. planted while the folder was shared or copied from elsewhere, does not
   verify and is regenerated. The text that passed the checks is what is executed (the file is
   not read a second time). Kernel files must also be regular files owned by the user.

Not covered: the same user or root (they can read the key), and the CUDA wrapper re-reading its
``.cu`` file after the check (it checks the file's checksum and content hash itself).
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.util
import logging
import os
import secrets
import stat
import sys
import tempfile
import threading
import warnings
from pathlib import Path

from .atomic import STALE_SECONDS, _UID, _clean_stale, _foreign, _umask, write_atomic  # noqa: F401

__all__ = ["cache_dir", "write_atomic", "stamp", "verify", "load_module", "cache_info", "clear_cache",
           "CHECKSUM_TAG", "HMAC_TAG", "UnsafeCacheWarning"]

CHECKSUM_TAG = "npdegen-body-sha256: "
HMAC_TAG = "npdegen-hmac-sha256: "
KEY_NAME = ".npdegen-key"
NUMBA_FOLDER = "__pycache__"
#: Line-comment markers by file suffix (the checksum line must be a comment in the file's language).
_COMMENT = {".py": "#", ".cu": "//", ".c": "//", ".h": "//"}
_modules: dict[str, object] = {}
_lock = threading.Lock()
_dir_lock = threading.RLock()
_checked: dict[str, tuple] = {}          # configured folder -> (identity of what was checked, folder used)
_keys: dict[str, bytes] = {}


class UnsafeCacheWarning(RuntimeWarning):
    """The configured cache folder is shared or not the user's; another folder is used."""


def _configured() -> Path:
    env = os.environ.get("NPDEGEN_CACHE_DIR")
    return Path(env).expanduser() if env else _default()


def _default() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "npdegen"


def _problem(path: Path) -> str | None:
    """None if ``path`` (created if missing) is a folder only this user can change, else why not."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        return f"cannot create it: {exc}"
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder"
    if _foreign(st):
        return f"owned by uid {st.st_uid}, not by this user (uid {_UID})"
    if _UID is not None and st.st_mode & 0o022:
        return f"writable by {'group and others' if st.st_mode & 0o002 else 'its group'} (mode {st.st_mode & 0o777:o})"
    return _check_numba_folder(path / NUMBA_FOLDER)


def _check_numba_folder(folder: Path) -> str | None:
    """numba's ``__pycache__`` here: made 0700; files of another user in it are deleted."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or _foreign(st):
        return f"{folder} is not a folder of this user"
    if _UID is not None and st.st_mode & 0o077:
        os.chmod(folder, 0o700)
    for entry in os.scandir(folder):
        est = entry.stat(follow_symlinks=False)
        if _foreign(est) or stat.S_ISLNK(est.st_mode):
            warnings.warn(f"npdegen: removed {entry.path}, not written by this user", UnsafeCacheWarning, 3)
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    return None


def cache_dir() -> Path:
    """The cache folder: the configured one if it is private (see the module docstring), else a
    private fallback (with one :class:`UnsafeCacheWarning`)."""
    path = _configured()
    with _dir_lock:
        try:
            st = path.stat()
            ident = (st.st_dev, st.st_ino, st.st_uid, st.st_mode)
        except OSError:
            ident = None
        known = _checked.get(str(path))
        if known is not None and ident is not None and known[0] == ident:
            if known[1] != path:
                known[1].mkdir(mode=0o700, exist_ok=True)
            return known[1]
        reason = _problem(path)
        folder = path
        if reason is not None:
            default = _default()
            if default != path and _problem(default) is None:
                folder = default
            else:
                folder = Path(tempfile.mkdtemp(prefix="npdegen-cache-"))
                _check_numba_folder(folder / NUMBA_FOLDER)
            warnings.warn(f"npdegen: not using the cache folder {path}: {reason}; using {folder} instead "
                          "(make it private to this user: chmod 700, owned by you)", UnsafeCacheWarning, 2)
        else:
            _clean_stale(path)
        st = path.stat() if path.exists() else None
        _checked[str(path)] = ((st.st_dev, st.st_ino, st.st_uid, st.st_mode) if st else None, folder)
        return folder


def _secret(folder: Path) -> bytes:
    """The per-user HMAC key of ``folder`` (created 0600 on first use; replaced if not private)."""
    path = folder / KEY_NAME
    with _dir_lock:
        if str(path) in _keys:
            return _keys[str(path)]
        for _ in range(3):
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            except FileNotFoundError:
                _create_key(path)
                continue
            except OSError:                       # a symlink or something else that is not our key
                _discard(path)
                continue
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                data = fh.read(33) if stat.S_ISREG(st.st_mode) else b""
            if len(data) == 32 and not _foreign(st) and (_UID is None or not st.st_mode & 0o077):
                _keys[str(path)] = data
                return data
            _discard(path)
        raise OSError(f"{path}: cannot create a private key for the kernel cache")


def _discard(path: Path):
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            raise OSError(f"{path} is a folder; remove it (it should hold npdegen's cache key)")
        path.unlink()


def _create_key(path: Path):
    fd, tmp = tempfile.mkstemp(prefix=".key.", suffix=".tmp", dir=path.parent)     # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)                    # atomic, and never replaces a concurrent creator's key
        except FileExistsError:
            pass
        except (AttributeError, NotImplementedError, PermissionError):
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


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


def _mac(secret: bytes, name: str, body: str) -> str:
    return hmac.new(secret, name.encode() + b"\0" + body.encode(), hashlib.sha256).hexdigest()


def _seal(text: str, name: str, secret: bytes) -> str:
    """``text`` (stamped or not) as stored in the cache: checksum line, HMAC line, body."""
    suffix = Path(name).suffix
    body = text.partition("\n")[2] if verify(text) else text
    return stamp(f"{_COMMENT.get(suffix, '#')} {HMAC_TAG}{_mac(secret, name, body)}\n{body}", suffix)


def _authentic(text: str, name: str, secret: bytes) -> bool:
    """True if ``text`` passes the checksum and carries this user's HMAC of ``name`` and its body."""
    if not verify(text):
        return False
    line, _, body = text.partition("\n")[2].partition("\n")
    tag = line.partition(HMAC_TAG)[2]
    return bool(tag) and line.startswith(("# ", "// ")) and hmac.compare_digest(tag, _mac(secret, name, body))


def _read(path: Path) -> str | None:
    """The text of ``path`` if it is a regular UTF-8 file of this user (no symlink, FIFO, folder)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or _foreign(st):
            return None
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _usable_stem(folder: Path, stem: str, suffixes) -> str:
    """``stem``, or ``stem_1``, … when something that is not a file (a folder) blocks a path."""
    for i in range(8):
        name = stem if i == 0 else f"{stem}_{i}"
        if not any((folder / f"{name}{s}").is_dir() for s in suffixes):
            if i:
                warnings.warn(f"npdegen: {folder / stem}.* is a folder, not a kernel; the kernel is kept as "
                              f"{name} instead (remove the folder)", UnsafeCacheWarning, 3)
            return name
    raise OSError(f"{folder / stem}: folders block the kernel's file names; remove them")


#: The one line said before a numba kernel without cached machine code is first used.
COMPILE_NOTICE = "npdegen: compiling numba kernel %s (first use, ~10-20 s; cached afterwards)"


def _numba_compiles(folder: Path, stem: str, text: str, written: bool) -> bool:
    """Whether numba will compile this module's functions on first use: it imports numba and its
    machine code is not cached — the files were just (re)written (numba's index is keyed by the
    source file's time stamp and size) or ``__pycache__`` holds no index ``<stem>.*.nbi`` for it.
    Approximate: an index of some functions does not prove the others are cached."""
    if "import numba" not in text:
        return False
    if written:
        return True
    try:
        names = os.listdir(folder / NUMBA_FOLDER)
    except OSError:
        return True
    return not any(name.startswith(f"{stem}.") and name.endswith(".nbi") for name in names)


@contextlib.contextmanager
def _numba_cache_inside(text: str):
    """While the module runs, numba's ``cache=True`` uses ``__pycache__`` beside it (in the checked
    folder) instead of ``$NUMBA_CACHE_DIR``."""
    config = None
    if "import numba" in text:
        with contextlib.suppress(ImportError):
            import numba.core.config as config
    saved = getattr(config, "CACHE_DIR", "")
    if config is not None:
        config.CACHE_DIR = ""
    try:
        yield
    finally:
        if config is not None:
            config.CACHE_DIR = saved


def load_module(key: str, stem: str, make_files, suffixes=(".py",)) -> object:
    """Import the cached module ``<stem>.py`` (content key ``key``), writing its files first if any
    of ``suffixes`` is absent or any of them fails its checks (module docstring).

    ``make_files()`` returns ``{suffix: text}`` (``".py"`` plus e.g. ``".cu"``); it is called only
    when a cached file is missing or bad. Other files beside them (``<stem>.bak``) are ignored.
    A numba module without cached machine code is announced by one WARNING line on the
    ``"npdegen"`` logger (:data:`COMPILE_NOTICE`) before it is imported.
    """
    with _lock:
        if key in _modules:
            return _modules[key]
        folder = cache_dir()
        secret = _secret(folder)
        suffixes = tuple(dict.fromkeys((".py", *suffixes)))
        stem = _usable_stem(folder, stem, suffixes)
        texts = {s: _read(folder / f"{stem}{s}") for s in suffixes}
        good = all(t is not None and _authentic(t, f"{stem}{s}", secret) for s, t in texts.items())
        written = not (good and key in texts[".py"])
        if written:
            texts = {s: _seal(t, f"{stem}{s}", secret) for s, t in make_files().items()}
            for suffix, text in texts.items():
                write_atomic(folder / f"{stem}{suffix}", text)
        if _numba_compiles(folder, stem, texts[".py"], written):
            # numba compiles lazily, for 10-20 s, on the first call: say so once per kernel (a second
            # load in this process returns the module above; a warm cache has numba's index). Logged
            # at WARNING on "npdegen": without logging configured Python prints it to stderr, which
            # notebooks show too.
            logging.getLogger("npdegen").warning(COMPILE_NOTICE, stem)
        path = folder / f"{stem}.py"
        name = f"npdegen_kernel_{key[:16]}"
        spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
        module = importlib.util.module_from_spec(spec)
        module.__file__ = str(path)
        # Execute the text that was verified, not whatever the file holds by now.
        with _numba_cache_inside(texts[".py"]):
            exec(compile(texts[".py"], str(path), "exec"), module.__dict__)  # noqa: S102 - our own verified code
        sys.modules[name] = module
        _modules[key] = module
        return module


def _entries(folder: Path):
    return sorted(p for p in folder.iterdir() if p.name[:1].isascii() and p.name[:1].isalpha() and p.is_file())


def cache_info() -> dict:
    """Folder, number of files, bytes, and files failing their checks (they will be regenerated)."""
    folder = cache_dir()
    secret = _secret(folder)
    files = _entries(folder)
    bad = [p.name for p in files if not _authentic(p.read_text(encoding="utf-8", errors="replace"), p.name, secret)]
    return {"folder": str(folder), "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "corrupt": bad}


def clear_cache() -> int:
    """Delete npdegen's files (those carrying its checksum line) and numba's files for them from the
    cache; returns how many kernel files."""
    folder = cache_dir()
    removed, stems = 0, set()
    for path in _entries(folder):
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            ours = CHECKSUM_TAG in fh.readline()
        if ours:
            path.unlink(missing_ok=True)
            stems.add(path.stem)
            removed += 1
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder / NUMBA_FOLDER):
            if entry.name.split(".", 1)[0] in stems:
                os.unlink(entry.path)
    with _lock:
        _modules.clear()
    return removed
