"""The Dask benchmark scripts still run (a smoke run of their ``--quick`` modes in a subprocess).

They import npdegen's internals (the halo plan, the distributed entry points); a refactor that moves
one must not leave a recorded benchmark that no longer starts.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dask", reason="dask is optional (npdegen[dask])")
pytest.importorskip("distributed", reason="dask.distributed is optional (npdegen[dask])")

_BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(_BENCH / script), *args], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_bench_dask_domain_quick_runs():
    text = _run("bench_dask_domain.py", "--quick", "--repeat", "1")
    assert "| single |" in text and "domain B=" in text


@pytest.mark.slow
def test_bench_dask_quick_runs():
    text = _run("bench_dask.py", "--quick")
    assert "LocalCluster, 2 worker(s)" in text
