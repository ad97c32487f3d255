"""Issue 11, items 3 and 5: the kernel cache refuses planted code and shared folders, keeps numba's
cache inside its private folder, and survives junk in the folder."""
import contextlib
import os
import shutil
import threading
import time

import pytest

from npdegen.runtime import atomic, cache


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("NPDEGEN_CACHE_DIR", str(path))
    monkeypatch.setattr(cache, "_modules", {})
    return path


class Maker:
    """make_files for load_module, counting its calls."""

    def __init__(self, body="VALUE = 42\n# key-abc\n"):
        self.body, self.calls = body, 0

    def __call__(self):
        self.calls += 1
        return {".py": cache.stamp(self.body)}


def load(make, key="key-abc", stem="k"):
    cache._modules.clear()
    return cache.load_module(key, stem, make)


def test_planted_kernel_with_a_valid_checksum_is_not_imported(folder):
    make = Maker()
    assert load(make).VALUE == 42
    path = folder / "k.py"
    planted = cache.stamp("VALUE = 666\n# key-abc\n")              # body and checksum line replaced
    assert cache.verify(planted)
    path.write_text(planted)
    assert load(make).VALUE == 42 and make.calls == 2
    # a forged HMAC line under another key does not help either
    path.write_text(cache._seal("VALUE = 666\n# key-abc\n", "k.py", b"x" * 32))
    assert load(make).VALUE == 42 and make.calls == 3
    assert load(make).VALUE == 42 and make.calls == 3                 # a genuine file is reused
    assert "666" not in path.read_text()


def test_key_is_private_and_replaced_when_not(folder):
    make = Maker()
    load(make)
    key = folder / cache.KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    key.chmod(0o644)                                                   # readable by others: compromised
    cache._keys.clear()
    assert load(make).VALUE == 42 and make.calls == 2                  # old kernels no longer verify
    assert key.stat().st_mode & 0o777 == 0o600


def test_shared_folder_falls_back_with_a_warning(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.warns(cache.UnsafeCacheWarning, match="writable by group and others"):
        used = cache.cache_dir()
    assert used == tmp_path / "xdg" / "npdegen" and used.stat().st_mode & 0o077 == 0
    assert load(Maker()).VALUE == 42
    assert not any(folder.iterdir())                                   # nothing written to the shared one
    folder.chmod(0o770)
    with pytest.warns(cache.UnsafeCacheWarning, match="writable by its group"):
        cache.cache_dir()


def test_folder_of_another_user_is_not_used(folder, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))                  # the default is the same folder
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(atomic, "_UID", os.stat(folder).st_uid + 1)     # whose files count as foreign
    with pytest.warns(cache.UnsafeCacheWarning, match="not by this user"):
        used = cache.cache_dir()
    assert used != folder and folder not in used.parents and used.stat().st_mode & 0o077 == 0
    shutil.rmtree(used)                                                # the process's private fallback


@pytest.mark.skipif(not hasattr(os, "chown") or os.geteuid() != 0, reason="needs root to plant another user's file")
def test_numba_files_of_another_user_are_removed(folder):
    cache.cache_dir()
    planted = folder / cache.NUMBA_FOLDER / "k.f-1.py312.nbi"
    planted.write_bytes(b"pickle payload")
    os.chown(planted, 12345, 12345)
    cache._checked.clear()
    with pytest.warns(cache.UnsafeCacheWarning, match="not written by this user"):
        cache.cache_dir()
    assert not planted.exists()


def test_numba_cache_stays_in_the_private_folder(folder, tmp_path, monkeypatch):
    numba = pytest.importorskip("numba")
    shared = tmp_path / "shared-numba"
    shared.mkdir()
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(shared))
    body = ("import numba\n\n@numba.njit(cache=True)\ndef plus_one(x):\n    return x + 1\n\n"
            "VALUE = plus_one(41)\n# key-numba\n")
    mod = load(Maker(body), key="key-numba", stem="nb")
    assert mod.VALUE == 42 and numba.config.CACHE_DIR == str(shared)   # restored afterwards
    assert not list(shared.rglob("*"))
    index = list((folder / cache.NUMBA_FOLDER).glob("nb.plus_one*.nbi"))
    assert index and (folder / cache.NUMBA_FOLDER).stat().st_mode & 0o077 == 0
    assert cache.clear_cache() == 1 and not list((folder / cache.NUMBA_FOLDER).glob("nb.*"))


def test_invalid_utf8_kernel_is_regenerated(folder):
    make = Maker()
    load(make)
    (folder / "k.py").write_bytes(b"\xff\xfe\x00 not utf-8")
    assert load(make).VALUE == 42 and make.calls == 2
    assert cache.verify((folder / "k.py").read_text())


def test_folder_at_the_kernel_path_is_worked_around(folder):
    folder.mkdir(mode=0o700)
    (folder / "k.py").mkdir()
    make = Maker()
    with pytest.warns(cache.UnsafeCacheWarning, match="is a folder"):
        assert load(make).VALUE == 42
    assert (folder / "k_1.py").is_file()
    with pytest.warns(cache.UnsafeCacheWarning):
        assert load(make).VALUE == 42 and make.calls == 1              # found next to it, not rewritten


def test_fifo_at_the_kernel_path_does_not_hang(folder):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    folder.mkdir(mode=0o700)
    os.mkfifo(folder / "k.py")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("mod", load(Maker())), daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():                      # blocked opening the FIFO: unblock it, then fail
        with contextlib.suppress(OSError):
            os.close(os.open(folder / "k.py", os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=20)
        pytest.fail("load_module blocked on a FIFO at the kernel path")
    assert result["mod"].VALUE == 42 and (folder / "k.py").is_file()


def test_stray_sibling_does_not_force_a_rewrite(folder):
    make = Maker()
    load(make)
    (folder / "k.bak").write_text("an editor's backup")
    (folder / "k.py~").write_text("another")
    before = (folder / "k.py").stat().st_mtime_ns
    for _ in range(3):
        assert load(make).VALUE == 42
    assert make.calls == 1 and (folder / "k.py").stat().st_mtime_ns == before


def test_stale_temporaries_are_removed(folder, tmp_path):
    folder.mkdir(mode=0o700)
    old, fresh = folder / ".k.py.abc123.tmp", folder / ".k.py.def456.tmp"
    for p in (old, fresh):
        p.write_text("partial")
    past = time.time() - cache.STALE_SECONDS - 60
    os.utime(old, (past, past))
    cache._checked.clear()
    load(Maker())
    assert not old.exists() and fresh.exists()                         # a live writer's file is kept
    # write_atomic (also used by checkpoints) cleans its own leftovers
    target = tmp_path / "run" / "ckpt.npz"
    target.parent.mkdir()
    stale = target.parent / ".ckpt.npz.xyz.tmp"
    stale.write_text("killed")
    os.utime(stale, (past, past))
    cache.write_atomic(target, b"data")
    assert sorted(p.name for p in target.parent.iterdir()) == ["ckpt.npz"]
