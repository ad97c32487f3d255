#!/usr/bin/env bash
# npdegen on Dask with CuPy chunks (issue 15 item 4): the GPU tests and one timing, ~2-3 minutes on
# one GPU. From the repository root of a machine with a GPU:
#
#   bash benchmarks/gpu_check_dask.sh
#
# The lent GPU machines have CuPy but no dask and cannot reach a package index. First, HERE (a
# machine with pip access), fetch the wheels of dask[distributed] (3 MB, Python 3.12, x86-64) into
# .whl/ and keep them out of git:
#
#   echo /.whl/ >> .git/info/exclude; bash benchmarks/gpu_check_dask.sh --fetch-wheels
#
# then carry .whl with the run (device tool: carry=[".whl"]); this script installs them into
# /tmp/npdegen-site when `import distributed` fails.
#
# Steps: 1. the tests tests/test_distributed_gpu.py (CuPy chunks vs the single-process CuPy and NumPy
# runs, 1e-12, float64; skipped with one line when no GPU is usable) and tests/test_distributed_arrays.py
# (the module choice, CPU); 2. a timing of loss_and_grad, batch 256, n 4096, L 32, float64, CuPy:
# one process vs a LocalCluster of 1 worker on CuPy chunks of 64 samples, blocks of 8 and 64.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=(dask==2026.8.0 distributed==2026.8.0 partd locket tblib tornado zict)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p .whl
    exec "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
fi

if ! "$PY" -c "import distributed" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/npdegen-site \
            .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/npdegen-site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "dask.distributed is not installed and .whl/ holds no wheels: see the top of $0" >&2
        exit 1
    fi
fi

echo "== machine"; uptime; nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import cupy, dask, numpy; print('cupy', cupy.__version__, 'dask', dask.__version__, 'numpy', numpy.__version__)"

echo "== tests"
export NPDEGEN_CACHE_DIR=${NPDEGEN_CACHE_DIR:-/tmp/npdegen-gpu-check-cache}
timeout 170 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_distributed_gpu.py tests/test_distributed_arrays.py
status=$?

echo "== timing (loss_and_grad, batch 256, n 4096, L 32, float64)"
timeout 90 "$PY" - <<'EOF'
import statistics
import time

import cupy
import dask.array as da
import numpy as np
import sympy as sp
from distributed import Client, LocalCluster

import npdegen
import npdegen.distributed as dd
from npdegen.runtime.cupy_backend import gpu_status

if gpu_status()[0] is None:
    raise SystemExit(f"timing not run, no GPU: {gpu_status()[1]}")

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")
layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                          params={U: "heterogeneous", D: "heterogeneous", R: "heterogeneous"}, bias="heterogeneous")
net = layer.compile(n=4096, layers=32, omega=0.5, backend="cupy")
rng = np.random.default_rng(0)
x = cupy.asarray(rng.standard_normal((256, 4096)))
y = cupy.tanh(x)
theta = net.init_params(seed=1, scale=0.05, values={"D": 0.1})


def median(fn, repeat=5):
    fn()
    out = []
    for _ in range(repeat):
        cupy.cuda.Device().synchronize()
        t0 = time.perf_counter()
        fn()
        cupy.cuda.Device().synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


one = median(lambda: net.loss_and_grad(x, y, theta))
print(f"one process, CuPy arrays:            {one * 1e3:8.1f} ms")
l0, g0 = net.loss_and_grad(x, y, theta)
with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as c, Client(c) as cl:
    xd, yd = da.from_array(x, chunks=(64, -1)).persist(), da.from_array(y, chunks=(64, -1)).persist()
    for block in (8, 64):
        t = median(lambda: dd.loss_and_grad(net, xd, yd, theta, client=cl, block=block))
        loss, g = dd.loss_and_grad(net, xd, yd, theta, client=cl, block=block)
        err = max(float(cupy.max(cupy.abs(g[k] - g0[k]))) / max(1.0, float(cupy.max(cupy.abs(g0[k])))) for k in g0)
        print(f"LocalCluster 1 worker, block {block:3d}:   {t * 1e3:8.1f} ms  ({t / one:.2f}x one process; "
              f"max rel. gradient difference {err:.1e}, loss {abs(loss - l0) / abs(l0):.1e})")
EOF
timing=$?
uptime
echo "tests exit $status, timing exit $timing"
exit $(( status || timing ))
