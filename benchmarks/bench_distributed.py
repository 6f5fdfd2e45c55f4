"""Data-parallel training on one machine: ``mpiexec -n 2`` x 1 thread per rank against 1 process x 2 threads.

ResNet-20 (``resnet20_cifar(shortcut="B")``, 0.27 M parameters), global batch 64 (32 per rank), synthetic
CIFAR-sized data, float32, SGD with momentum. Each configuration runs in fresh processes, alternating
over ``--rounds`` rounds; each warms up 3 steps and times ``--steps`` steps (median). A 2-rank step is
``FitSync.train_step`` (what ``fit`` runs: local forward/backward with the gradient buckets' ``Iallreduce``
started as backward completes them, the wait for them, the update); the 1-process step is ``train_on_batch``
on the whole batch. Reported: images/s of each, their ratio (2 ranks / 1 process; issue 15's target is
>= 0.9), and the allreduce time per step, two ways: inside the steps (``GradBuckets.wait_s``, the
``Waitall`` after backward: what the overlap did not hide, including waiting for the slower rank) and
alone (``allreduce_mean_`` on a buffer of the gradients' size, after a barrier: the transfer itself),
with the bucket count (``CORENET_BUCKET_MB``, default 25 MiB: one bucket for ResNet-20's 1.09 MB).
The load average is printed first.

    python benchmarks/bench_distributed.py --rounds 3 --steps 15 [--json dist.json]
    CORENET_BUCKET_MB=0.25 python benchmarks/bench_distributed.py     # 4 buckets
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _harness as H  # noqa: E402

BATCH = 64
WARMUP = 3


def _model():
    import corenet
    from corenet import optim

    model = corenet.models.resnet20_cifar(shortcut="B")
    model.compile(optim.SGD(lr=0.01, momentum=0.9), "cross_entropy")
    return model


def worker(steps: int) -> dict:
    import corenet.distributed as dist
    import corenet.distributed.fit as dist_fit
    import corenet.distributed.world as dist_world

    dist.init()
    p, r = dist.size(), dist.rank()
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    nparams = sum(g.size for g in model.gradients().values())
    times, comm_times = [], []
    if p == 1:
        for i in range(WARMUP + steps):
            t = time.perf_counter()
            model.train_on_batch(x, y)
            if i >= WARMUP:
                times.append(time.perf_counter() - t)
        return {"ranks": 1, "step_s": statistics.median(times), "params": nparams}
    sync = dist_fit.FitSync(model, 0)
    xs, ys = [np.ascontiguousarray(x[r::p])], y[r::p]
    for i in range(WARMUP + steps):
        dist.barrier()
        t = time.perf_counter()
        sync.train_step(model, xs, ys, "raise", [])
        if i >= WARMUP:
            times.append(time.perf_counter() - t)
            comm_times.append(sync.buckets.wait_s)
    buf = np.zeros(nparams, np.float32)
    alone = []
    for _ in range(20):
        dist.barrier()
        t = time.perf_counter()
        dist.allreduce_mean_([buf], weight=1.0)
        alone.append(time.perf_counter() - t)
    # the slowest rank sets the pace: take every step's maximum over the ranks
    step_s = max(dist_world._comm().allgather(statistics.median(times)))
    comm_s = max(dist_world._comm().allgather(statistics.median(comm_times)))
    alone_s = max(dist_world._comm().allgather(statistics.median(alone[5:])))
    return {"ranks": p, "step_s": step_s, "allreduce_in_step_s": comm_s, "allreduce_alone_s": alone_s,
            "params": nparams, "rank": r, "buckets": len(sync.buckets.bufs), "early": sync.buckets.early}


def _child(cmd, threads):
    env = {k: v for k, v in os.environ.items()}
    env["CORENET_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):  # rank 0's result
            return json.loads(line)
    raise SystemExit(f"no result from {' '.join(cmd)}:\n{proc.stdout[-2000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        res = worker(args.steps)
        if res.get("rank", 0) == 0:
            print(json.dumps(res), flush=True)
        return
    line, load = H.load_line()
    print(line, flush=True)
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("bench_distributed: needs mpiexec and mpi4py (pip install corenet[mpi])")
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--steps", str(args.steps)]
    p = args.ranks
    one, many = [], []
    for k in range(args.rounds):
        one.append(_child(me, p))
        many.append(_child([mpiexec, "-n", str(p), *me], 1))
        print(f"round {k + 1}: 1 process x {p} threads {one[-1]['step_s'] * 1e3:.1f} ms/step, "
              f"{p} ranks x 1 thread {many[-1]['step_s'] * 1e3:.1f} ms/step "
              f"(allreduce in step {many[-1]['allreduce_in_step_s'] * 1e3:.2f} ms, "
              f"alone {many[-1]['allreduce_alone_s'] * 1e3:.2f} ms; {many[-1]['buckets']} buckets, "
              f"{many[-1]['early']} started during backward)", flush=True)
    ratios = [o["step_s"] / m["step_s"] for o, m in zip(one, many)]
    med1 = statistics.median(o["step_s"] for o in one)
    medp = statistics.median(m["step_s"] for m in many)
    comm_in = statistics.median(m["allreduce_in_step_s"] for m in many)
    comm_alone = statistics.median(m["allreduce_alone_s"] for m in many)
    nparams = one[0]["params"]
    print(f"ResNet-20 ({nparams:,} parameters, gradients {nparams * 4 / 1e6:.2f} MB float32), global batch {BATCH}")
    print(f"  1 process x {p} threads : {med1 * 1e3:7.1f} ms/step  {BATCH / med1:7.1f} images/s")
    print(f"  {p} ranks x 1 thread    : {medp * 1e3:7.1f} ms/step  {BATCH / medp:7.1f} images/s")
    r, lo, hi = H.spread(ratios)
    print(f"  images/s ratio ({p} ranks / 1 process): {r:.3f} (rounds {lo:.3f} .. {hi:.3f}; target >= 0.9)")
    print(f"  allreduce per step: {comm_in * 1e3:.2f} ms waited for after backward (with the slower rank), "
          f"{comm_alone * 1e3:.2f} ms alone ({comm_alone / medp * 100:.1f}% of the step)")
    H.write_json(args.json, {"load": load, "one": one, "many": many, "ratio": ratios,
                             "machine": H.machine_info(p)})


if __name__ == "__main__":
    main()
