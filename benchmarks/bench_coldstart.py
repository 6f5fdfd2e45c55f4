"""Cold start: time from a fresh process to the end of a LeNet-5 forward pass, per backend.

Each measurement starts a new Python process that imports corenet, selects the backend, and
runs one forward pass of a LeNet-5-shaped net made of functional calls (conv 6@5x5 pad 2, ReLU,
max pool 2, conv 16@5x5, ReLU, max pool 2, linear 120, ReLU, linear 84, ReLU, linear 10) on a
batch of 64 x 1x28x28, float32. The time is taken by this (parent) process around the whole child,
interpreter start-up included. Two Numba cache states:

- ``cold``: ``NUMBA_CACHE_DIR`` points to a new empty directory, so Numba compiles every kernel
  it touches;
- ``warm``: the same directory again after a first run has filled it, so Numba loads machine code.

The child also reports the time it spent in ``import corenet`` and in the forward pass, whether
any Numba kernel module was imported, and the cache directory is inspected afterwards: with the
Cython backend no Numba kernel module is imported and nothing is written to the Numba cache.

    python benchmarks/bench_coldstart.py --threads 2 --repeat 3 --json coldstart.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import time, sys, json
t0 = time.perf_counter()
import numpy as np
import corenet
from corenet import F
corenet.set_backend(sys.argv[1])
t1 = time.perf_counter()
rng = np.random.default_rng(0)
f32 = np.float32
x = rng.standard_normal((64, 1, 28, 28)).astype(f32)
p = {name: (rng.standard_normal(shape) * 0.1).astype(f32) for name, shape in [
    ("c1w", (6, 1, 5, 5)), ("c1b", (6,)), ("c2w", (16, 6, 5, 5)), ("c2b", (16,)),
    ("f1w", (120, 400)), ("f1b", (120,)), ("f2w", (84, 120)), ("f2b", (84,)), ("f3w", (10, 84)), ("f3b", (10,))]}
h = F.max_pool2d(F.relu(F.conv2d(x, p["c1w"], p["c1b"], padding=2)), 2)
h = F.max_pool2d(F.relu(F.conv2d(h, p["c2w"], p["c2b"])), 2)
h = h.reshape(h.shape[0], -1)
h = F.relu(F.linear(h, p["f1w"], p["f1b"]))
h = F.relu(F.linear(h, p["f2w"], p["f2b"]))
y = F.linear(h, p["f3w"], p["f3b"])
t2 = time.perf_counter()
assert y.shape == (64, 10) and np.isfinite(y).all()
numba_kernels = sorted(m for m in sys.modules if m.startswith("corenet.kernels.numba_cpu."))
print(json.dumps({"import_s": t1 - t0, "forward_s": t2 - t1, "numba_kernel_modules": numba_kernels}))
"""


def run_child(backend: str, cache_dir: str, threads: int) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, CORENET_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, backend], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{backend}: child failed\n{out.stderr}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    info["wall_s"] = wall
    info["cache_files"] = sum(len(files) for _, _, files in os.walk(cache_dir))
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per (backend, cache state)")
    ap.add_argument("--json", help="write the results to this path")
    args = ap.parse_args(argv)

    import corenet

    backends = [b for b in corenet.backends() if b != "cuda"]
    rows = []
    print(f"{'backend':8s} {'cache':5s} {'wall s':>7s} {'import s':>8s} {'forward s':>9s}  numba kernels / cache files")
    for backend in backends:
        runs = {"cold": [], "warm": []}
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="corenet-numba-cache-") as cache:
                runs["cold"].append(run_child(backend, cache, args.threads))
                runs["warm"].append(run_child(backend, cache, args.threads))
        for state, infos in runs.items():
            row = {
                "backend": backend,
                "cache": state,
                "wall_s": statistics.median(i["wall_s"] for i in infos),
                "import_s": statistics.median(i["import_s"] for i in infos),
                "forward_s": statistics.median(i["forward_s"] for i in infos),
                "numba_kernel_modules": infos[-1]["numba_kernel_modules"],
                "cache_files": infos[-1]["cache_files"],
                "runs": len(infos),
            }
            rows.append(row)
            print(f"{backend:8s} {state:5s} {row['wall_s']:7.2f} {row['import_s']:8.2f} {row['forward_s']:9.2f}  "
                  f"{len(row['numba_kernel_modules'])} / {row['cache_files']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "python": sys.version.split()[0], "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
