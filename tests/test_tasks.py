"""npdegen.tasks: the registry, reproducibility, the on-disk cache, initial conditions and the command line."""
import os
import pickle
import zipfile

import numpy as np
import pytest

import npdegen.tasks as tasks
from npdegen.tasks import SineSum, TaskCacheWarning, UnitInterval, cell_centres
from npdegen.tasks import builders
from npdegen.tasks.__main__ import main
from npdegen.tasks.initial import Fronts
from npdegen.tasks.verify import Check, format_table

DOCUMENTED = ["advection-beta0.1-T0.5", "advection-beta0.1-T2", "advection-beta0.4-T0.5", "advection-beta0.4-T2",
              "advection-beta1-T0.5", "advection-beta1-T2", "burgers-nu0.1", "burgers-nu0.01", "fisher-kpp",
              "fisher-kpp-long", "varcoef-adr", "advection-diffusion-2d", "fisher-kpp-2d", "vorticity-2d"]


@pytest.fixture(autouse=True)
def task_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NPDEGEN_TASK_DIR", str(tmp_path / "tasks"))
    return tmp_path / "tasks"


def small(name, **kw):
    kw = {"n": 16, "n_train": 3, "n_test": 2, "cache": False, **kw}
    return tasks.make(name, **kw)


# ---------------------------------------------------------------- registry
def test_names_are_the_documented_ones():
    assert tasks.names() == DOCUMENTED
    assert tasks.names(dims=2) == ["advection-diffusion-2d", "fisher-kpp-2d", "vorticity-2d"]
    for name in DOCUMENTED:
        assert name in tasks.registry.__doc__ or name.startswith(("advection-beta", "burgers-nu"))
        assert tasks.describe(name).startswith(name + ": ")


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_task_generates_finite_pairs_on_its_grid(name):
    n = 8 if name.endswith("2d") else 16
    t = small(name, n=n, n_train=2, n_test=1)
    dims = 2 if name.endswith("2d") else 1
    assert t.x_train.shape == t.y_train.shape == (2,) + (n,) * dims
    assert t.x_test.shape == (1,) + (n,) * dims and t.dims == dims and t.n == (n,) * dims
    assert np.all(np.isfinite(t.y_train)) and t.boundary == "periodic"
    length = t.settings["lengths"][0]
    np.testing.assert_allclose(t.grid[0], (np.arange(n) + 0.5) * length / n)
    assert t.spacing[0] == length / n and t.domain[0] == (0.0, length)
    assert not t.x_train.flags.writeable and not t.y_test.flags.writeable
    assert (t.truth is not None) == (name == "varcoef-adr")


def test_advection_tasks_are_exact_shifts():
    """β T = 0.5 on 64 cells is a shift by 32 cells; β T = 0.2 on 80 cells by 16; β T = 2 is the identity."""
    t = small("advection-beta1-T0.5", n=64)
    np.testing.assert_allclose(t.y_train, np.roll(t.x_train, 32, axis=1), atol=1e-14)
    t = small("advection-beta0.4-T0.5", n=80)
    np.testing.assert_allclose(t.y_test, np.roll(t.x_test, 16, axis=1), atol=1e-14)
    t = small("advection-beta1-T2", n=32)
    np.testing.assert_allclose(t.y_train, t.x_train, atol=1e-14)


def test_fisher_tasks_stay_in_the_unit_interval():
    for name, n in (("fisher-kpp", 16), ("fisher-kpp-long", 32), ("fisher-kpp-2d", 8)):
        t = small(name, n=n)
        for a in (t.x_train, t.y_train, t.x_test, t.y_test):
            assert a.min() >= 0.0 and a.max() <= 1.0, name
    long = small("fisher-kpp-long", n=64)
    assert long.y_train.std(axis=1).min() > 0.05                 # the long domain keeps its structure


def test_varcoef_task_truth_is_the_network_profiles():
    t = small("varcoef-adr", n=32)
    np.testing.assert_allclose(tasks.varcoef_adr(t.x_train, profiles=dict(t.truth)), t.y_train, atol=1e-14)
    x = cell_centres(32)
    np.testing.assert_allclose(t.truth["D"], 0.25 + 0.1 * np.cos(2 * np.pi * x))
    assert set(t.truth) == {"U", "D", "R"}


def test_task_pickles():
    t = small("varcoef-adr")
    back = pickle.loads(pickle.dumps(t))
    np.testing.assert_array_equal(back.y_train, t.y_train)
    np.testing.assert_array_equal(back.truth["U"], t.truth["U"])
    assert back.settings == t.settings and back.name == t.name and back.spacing == t.spacing
    assert not back.x_train.flags.writeable and not back.truth["D"].flags.writeable
    with pytest.raises(TypeError):
        back.settings["nu"] = 1.0


def test_nrmse():
    t = small("burgers-nu0.1")
    assert t.nrmse(t.y_test) == 0.0 and t.nrmse(np.zeros_like(t.y_test)) == pytest.approx(1.0)
    assert t.nrmse(2 * t.y_train, split="train", pooled=True) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        t.nrmse(t.y_train)


# ---------------------------------------------------------------- reproducibility
def test_reproducible_by_seed_and_independent_splits():
    a, b = small("burgers-nu0.1", seed=3), small("burgers-nu0.1", seed=3)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    c = small("burgers-nu0.1", seed=4)
    assert not np.allclose(a.x_train, c.x_train)
    d = small("burgers-nu0.1", seed=3, n_train=5)
    np.testing.assert_array_equal(d.x_test, a.x_test)              # the test set does not depend on n_train
    np.testing.assert_array_equal(d.x_train[:3], a.x_train)


# ---------------------------------------------------------------- cache
def test_cache_hit_returns_identical_arrays_without_regenerating(task_dir, monkeypatch):
    first = tasks.make("varcoef-adr", n=16, n_train=3, n_test=2)
    files = list(task_dir.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith("varcoef-adr-n16-train3-test2-seed0-")

    def refuse(*args):
        raise AssertionError("a cache hit must not regenerate")
    monkeypatch.setitem(builders.BUILDERS, "varcoef", refuse)
    second = tasks.make("varcoef-adr", n=16, n_train=3, n_test=2)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, k), getattr(second, k))
    with pytest.raises(AssertionError, match="must not regenerate"):        # another request is a miss
        tasks.make("varcoef-adr", n=16, n_train=3, n_test=2, seed=1)


def _corrupt_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_garbage(path):
    path.write_bytes(b"not a zip file at all")


def _corrupt_array(path):
    """Rewrite one array with a changed value but keep the stored checksum: the checksum must catch it."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["y_train"] = arrays["y_train"].copy()
    arrays["y_train"][0, 0] += 1e-9
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _corrupt_other_request(path):
    other = tasks.make("varcoef-adr", n=16, n_train=3, n_test=2, seed=9)
    os.replace(next(p for p in path.parent.glob("*seed9*.npz")), path)
    assert other is not None


def _corrupt_missing_array(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "x_test"}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_garbage, _corrupt_array, _corrupt_other_request,
                                     _corrupt_missing_array], ids=lambda f: f.__name__[9:])
def test_corrupt_cache_file_is_regenerated_not_trusted(task_dir, corrupt):
    good = tasks.make("varcoef-adr", n=16, n_train=3, n_test=2)
    (path,) = task_dir.glob("*seed0*.npz")
    corrupt(path)
    with pytest.warns(TaskCacheWarning, match="generating the task again"):
        again = tasks.make("varcoef-adr", n=16, n_train=3, n_test=2)
    np.testing.assert_array_equal(again.y_train, good.y_train)
    with zipfile.ZipFile(path) as z:                                 # the file was replaced by a good one
        assert {"x_train.npy", "__sha256__.npy", "__meta__.npy"} <= set(z.namelist())
    tasks.make("varcoef-adr", n=16, n_train=3, n_test=2)              # and now hits without a warning


def test_cache_false_writes_nothing_and_a_folder_is_honoured(task_dir, tmp_path):
    small("varcoef-adr")
    assert not task_dir.exists() or not list(task_dir.iterdir())
    tasks.make("varcoef-adr", n=16, n_train=2, n_test=1, cache=tmp_path / "elsewhere")
    assert len(list((tmp_path / "elsewhere").glob("*.npz"))) == 1
    assert not list(tmp_path.glob("elsewhere/.*.tmp"))                # atomic: no temporaries left


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    (dict(name="burgers"), "valid names: advection-beta0.1-T0.5"),
    (dict(name="burgers-nu0.5"), "did you mean"),
    (dict(name=3), "unknown task"),
    (dict(name="fisher-kpp", n=4), r"n must be an integer in \[8, 16384\]"),
    (dict(name="vorticity-2d", n=1000), r"n must be an integer in \[8, 512\]"),
    (dict(name="fisher-kpp", n=16.0), "n must be an integer"),
    (dict(name="fisher-kpp", n=True), "n must be an integer"),
    (dict(name="fisher-kpp", n_train=0), "n_train"),
    (dict(name="fisher-kpp", n_test=-1), "n_test"),
    (dict(name="fisher-kpp", seed=-1), "seed"),
])
def test_bad_requests_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tasks.make(**kwargs)


def test_bad_cache_argument():
    with pytest.raises(TypeError, match="cache must be"):
        tasks.make("fisher-kpp", n=16, cache=3)


# ---------------------------------------------------------------- initial conditions
def test_sine_sums_follow_their_parameters():
    ic = SineSum.draw(200, np.random.default_rng(0))
    assert ic.mode.min() >= 1 and ic.mode.max() <= 8 and ic.amplitude.max() <= 1
    assert 0 < ic.absolute.sum() < 60 and 0 < (ic.sign < 0).sum() < 60 and 0 < np.isfinite(ic.window[:, 0, 0]).sum() < 60
    x = cell_centres(64)
    values = ic(x)
    plain = SineSum.draw(3, np.random.default_rng(1), p_abs=0, p_window=0, p_flip=0)
    expected = sum(plain.amplitude[:, i, None] * np.sin(2 * np.pi * plain.mode[:, i, 0, None] * x + plain.phase[:, i, None])
                   for i in range(2))
    np.testing.assert_allclose(plain(x), expected, atol=1e-14)
    assert np.all(values[ic.absolute] * ic.sign[ic.absolute, None] >= 0)


def test_windows_are_periodic_and_smooth():
    ic = SineSum.draw(40, np.random.default_rng(2), p_window=1.0)
    eps = 1e-6
    left, right = ic(np.array([eps, 2 * eps])), ic(np.array([1 + eps, 1 + 2 * eps]))
    np.testing.assert_allclose(left, right, atol=1e-9)


def test_primitive_is_the_antiderivative():
    ic = SineSum.draw(3, np.random.default_rng(3), p_abs=0, p_window=0)
    x, h = cell_centres(50), 1e-5
    np.testing.assert_allclose((ic.primitive(x + h) - ic.primitive(x - h)) / (2 * h), ic(x), atol=1e-8)
    np.testing.assert_allclose(ic.primitive(np.array([0.0])), 0.0, atol=1e-15)
    with pytest.raises(ValueError, match="without"):
        SineSum.draw(3, np.random.default_rng(3), p_abs=1.0).primitive(x)


def test_unit_interval_and_fronts():
    base = SineSum.draw(20, np.random.default_rng(4))
    u = UnitInterval.of(base)(cell_centres(1000))
    assert u.min() >= 0 and u.max() <= 1 and np.all(u.max(axis=1) > 0.999) and np.all(u.min(axis=1) < 1e-3)
    f = Fronts.of(SineSum.draw(20, np.random.default_rng(4), p_abs=0, p_window=0), 0.25)(cell_centres(1000))
    assert np.all((f.max(axis=1) > 0.999) | (f.min(axis=1) < 1e-3))      # a plateau at tanh(±1/0.25)
    assert np.all(f.max(axis=1) > 0.9) and np.all(f.min(axis=1) < 0.1)


@pytest.mark.parametrize("kwargs, match", [(dict(p_abs=1.5), "p_abs"), (dict(modes=0), "modes"),
                                           (dict(lengths=(1.0, 2.0)), "lengths"), (dict(delta=0), "delta")])
def test_bad_initial_condition_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SineSum.draw(2, np.random.default_rng(0), **kwargs)
    with pytest.raises(TypeError, match="Generator"):
        SineSum.draw(2, 0)


# ---------------------------------------------------------------- command line
def test_cli_list_and_make(tmp_path, capsys):
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert all(name + ":" in listing for name in DOCUMENTED)
    assert main(["make", "varcoef-adr", "--n", "16", "--n-train", "2", "--n-test", "1", "--no-cache",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "x_train" in out and "truth" in out
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "truth_U.npy"), tasks.varcoef_profiles(16)["U"])
    assert np.load(tmp_path / "out" / "y_train.npy").shape == (2, 16)
    assert main(["make", "bogus"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_verify_table_format():
    rows = [Check("a", 1e-13, 1e-12), Check("order", 3.9, 3.5, "min"), Check("bad", 2.0, 1.0)]
    table = format_table(rows)
    assert table.count("PASS") == 2 and table.count("FAIL") == 1 and not Check("nan", float("nan"), 1.0).ok


@pytest.mark.slow
def test_cli_verify_passes(capsys):
    assert main(["verify"]) == 0
    assert "FAIL" not in capsys.readouterr().out
