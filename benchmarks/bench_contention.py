"""Do more threads help or hurt a training step, on an idle machine and beside a busy neighbour?

Issue 12: with another process busy on one core, a Cython 2-thread step once took ~150x its
1-thread time (OpenMP workers spinning, then waiting whole scheduler slices). This script runs
LeNet-5 training steps (forward, loss, backward, SGD-momentum update) on synthetic MNIST-shaped
batches for each CPU backend, 1 and 2 threads, idle and loaded. Every configuration runs in its
own fresh process (the OpenMP runtime and BLAS read their settings once, at load). "Loaded"
starts a neighbour process that spins on one core (pinned to the last core this process may
use) for the whole measurement, then stops it.

The goals (issue 12): 2 threads never slower than 1 when idle; loaded at most 2x the idle
1-thread time. A third row per case runs the kernels on 2 threads but BLAS (numpy's matmul,
OpenBLAS) on 1: the diagnosis of what is left once the OpenMP workers sleep between regions
(``corenet/_ext/__init__.py``). OpenBLAS's own workers wait for the next GEMM by spinning with
``sched_yield`` (for up to ~0.1 s, ``OPENBLAS_THREAD_TIMEOUT``, read when numpy loads it), and
its calling thread spins until they finish; LeNet-5's GEMMs are a few microseconds of work
each, so every one of them waits for a second core, which a busy neighbour holds for whole
scheduler slices. Each configuration runs ``--rounds`` times, interleaved with the others; the table gives the
median over rounds of each run's median step time, and the fastest step seen. The load average
is printed with the table because other users of the machine make every number noisier.

    python benchmarks/bench_contention.py                  # batch 64 and 32, every CPU backend
    python benchmarks/bench_contention.py --batch 64 --backend cython --json contention.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.abspath(__file__)


# ------------------------------------------------------------------------------------- child
def child(backend: str, threads: int, blas: int | None, batch: int, seconds: float, max_steps: int) -> dict:
    """Time LeNet-5 steps in this process; the environment already holds backend and threads."""
    import corenet
    from corenet import _blas, models, optim

    corenet.set_backend(backend)
    corenet.set_num_threads(threads)
    if blas is not None:  # diagnosis only: corenet gives BLAS the kernels' thread count
        _blas.set_num_threads(blas)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = models.lenet5(seed=0)
    model.compile(optim.SGD(lr=0.01, momentum=0.9), "cross_entropy")
    first_loss = float(model.train_on_batch(x, y))  # compiles/loads kernels; checked by the parent
    for _ in range(2):
        model.train_on_batch(x, y)
    times = []
    start = time.perf_counter()
    while len(times) < max_steps and (len(times) < 5 or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    return {"first_loss": first_loss, "steps": len(times), "median_ms": 1e3 * statistics.median(times),
            "min_ms": 1e3 * min(times)}


# ------------------------------------------------------------------------------------ parent
def start_neighbour() -> subprocess.Popen:
    """A process that spins on one core (the last one we may use) until killed."""
    code = (
        "import os\n"
        "cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []\n"
        "if cpus: os.sched_setaffinity(0, {cpus[-1]})\n"
        "while True: pass\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.3)  # let it reach its loop
    return proc


def run_config(backend: str, threads: int, blas: int | None, batch: int, loaded: bool, seconds: float,
               max_steps: int) -> dict:
    env = dict(os.environ, CORENET_BACKEND=backend, CORENET_NUM_THREADS=str(threads))
    cmd = [sys.executable, HERE, "--child", "--backend", backend, "--threads", str(threads),
           "--batch", str(batch), "--seconds", str(seconds), "--max-steps", str(max_steps)]
    if blas is not None:
        cmd += ["--blas-threads", str(blas)]
    neighbour = start_neighbour() if loaded else None
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    if out.returncode != 0:
        raise RuntimeError(f"child {backend} {threads}t failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="all", help="numba, cython, auto or all")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget of each configuration's steps")
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="runs of every configuration, interleaved")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--blas-threads", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-blas-row", action="store_true", help="skip the 2-thread, 1-BLAS-thread diagnosis rows")
    args = ap.parse_args()

    if args.child:
        print(json.dumps(child(args.backend, args.threads, args.blas_threads, args.batch[0], args.seconds,
                               args.max_steps)))
        return

    import corenet

    avail = [b for b in corenet.backends() if b in ("numba", "cython", "auto")]  # auto: the default mix
    backends = avail if args.backend == "all" else [args.backend]
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()
    print(f"# {ncpu} cores, load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    # (threads, BLAS threads): None = corenet's choice (the same as the kernels')
    thread_cfgs = [(1, None), (2, None)] + ([] if args.no_blas_row else [(2, 1)])
    configs = [(batch, backend, loaded, threads, blas) for batch in args.batch for backend in backends
               for loaded in (False, True) for threads, blas in thread_cfgs]
    runs = {c: [] for c in configs}
    for _ in range(args.rounds):  # rounds interleave the configurations: slow drifts in the
        for c in configs:  # machine's load then hit every configuration alike
            runs[c].append(run_config(c[1], c[3], c[4], c[0], c[2], args.seconds, args.max_steps))
    rows = []
    for batch, backend, loaded, threads, blas in configs:
        rs = runs[(batch, backend, loaded, threads, blas)]
        rows.append(dict(backend=backend, batch=batch, threads=threads, blas_threads=blas or threads, loaded=loaded,
                         median_ms=statistics.median(r["median_ms"] for r in rs),
                         min_ms=min(r["min_ms"] for r in rs), steps=sum(r["steps"] for r in rs),
                         first_loss=rs[0]["first_loss"], runs=rs))
    for batch in args.batch:
        for backend in backends:
            group = [r for r in rows if r["batch"] == batch and r["backend"] == backend]
            # the result is checked before anything is read from the timings
            losses = [x["first_loss"] for r in group for x in r["runs"]]
            if max(losses) - min(losses) > 1e-4 * max(1.0, abs(losses[0])):
                raise RuntimeError(f"{backend} batch {batch}: first-step losses differ: {losses}")
            base = next(r["median_ms"] for r in group if not r["loaded"] and r["threads"] == 1)
            for r in group:
                r["vs_idle_1t"] = r["median_ms"] / base

    print(f"{'backend':8} {'batch':>5} {'load':>6} {'threads':>7} {'BLAS':>4} {'median ms':>10} {'min ms':>8} "
          f"{'x idle 1t':>9} {'steps':>5}")
    for r in rows:
        print(f"{r['backend']:8} {r['batch']:5d} {'busy' if r['loaded'] else 'idle':>6} {r['threads']:7d} "
              f"{r['blas_threads']:4d} "
              f"{r['median_ms']:10.2f} {r['min_ms']:8.2f} {r['vs_idle_1t']:9.2f} {r['steps']:5d}")
    load_after = os.getloadavg()
    print(f"# load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print("# goals: idle 2 threads <= idle 1 thread; busy <= 2x idle 1 thread")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": ncpu, "load_before": load_before, "load_after": load_after, "rows": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
