"""The experiment scripts run end to end at a tiny size (their results at full size are committed in
examples/experiments/results/ with the command, machine and date), and the baselines are right."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "experiments"))
from baselines import CirculantLinear, DenseLinear, nrmse  # noqa: E402


def test_linear_baselines_recover_linear_maps():
    rng = np.random.default_rng(0)
    n = 16
    X = rng.standard_normal((64, n))
    kernel = rng.standard_normal(n)
    Y = np.fft.irfft(np.fft.rfft(X, axis=1) * np.fft.rfft(kernel), n, axis=1)      # a circular convolution
    assert nrmse(CirculantLinear().fit(X, Y).predict(X), Y) < 1e-12
    A = rng.standard_normal((n, n))
    assert nrmse(DenseLinear(ridge=0).fit(X, X @ A).predict(X), X @ A) < 1e-10


def test_experiment_smoke(tmp_path):
    pytest.importorskip("sklearn")
    import run
    assert run.main(["advection-beta0.4-T0.5", "--smoke", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[-1])
    assert set(record["results"]) == {"npdegen", "dense-linear", "circulant-linear", "fno"}
    assert all(np.isfinite(r["nrmse"]) for r in record["results"].values() if "nrmse" in r)
    assert "| advection-beta0.4-T0.5 | npdegen |" in (tmp_path / "results.md").read_text()
