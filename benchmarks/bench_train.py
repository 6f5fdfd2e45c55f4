"""Training-step benchmarks: BENCHMARKS.md's three networks and issue 17's MobileNetV2 and
EfficientNet-B0 (3x64x64 inputs, batch 16), corenet against PyTorch NCHW and PyTorch channels_last,
each framework in its own process (BENCHMARKS.md's protocol).

For each network: a full step (forward, loss, backward, SGD-momentum update) on a synthetic batch
of 64 (16 for the two zoo families; their PyTorch twins are tests/zoo_twins.py's, torchvision's
modules re-typed, without stochastic depth). Processes alternate (corenet, torch NCHW, torch
channels_last, again) over ``--rounds`` rounds; each warms up 3 steps and reports the median of 12;
the table gives the median of the per-round ratios (torch ms / corenet ms, above 1 = corenet
faster) and their spread. ``--infer`` adds the eval-mode forward at batch 1 and the training batch.
The load average is printed first (a busy machine gives a warning). Then, each in a fresh process,
peak resident memory of a step and the cold start (process start -> end of the first LeNet-5 step)
with an empty and a warm Numba cache.

    python benchmarks/bench_train.py --threads 2 --rounds 3 --infer --json train.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _harness as H  # noqa: E402

NETWORKS = {  # name: (input shape without batch, classes)
    "lenet5_mnist_b64": ((1, 28, 28), 10),
    "resnet20_cifar_b64": ((3, 32, 32), 10),
    "alexnet_lrn_cifar_b64": ((3, 32, 32), 10),
    "mobilenet_v2_64px_b16": ((3, 64, 64), 10),
    "efficientnet_b0_64px_b16": ((3, 64, 64), 10),
}
BATCH = {"mobilenet_v2_64px_b16": 16, "efficientnet_b0_64px_b16": 16}  # others: 64


# ---------------------------------------------------------------------------------- corenet
def alexnet_lrn_cifar(num_classes=10, seed=0):
    """BENCHMARKS.md's AlexNet-with-LRN for 3x32x32 inputs, built with the graph API."""
    from corenet import Input, Model
    from corenet import layers as L

    x = Input((3, 32, 32))
    h = x
    for cout, k in ((64, 5), (128, 5)):
        h = L.Conv2d(cout, k, padding=k // 2)(h)
        h = L.ReLU()(h)
        h = L.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(h)
        h = L.MaxPool2d(3, 2)(h)
    h = L.ReLU()(L.Conv2d(192, 3, padding=1)(h))
    h = L.ReLU()(L.Conv2d(128, 3, padding=1)(h))
    h = L.MaxPool2d(3, 2)(h)
    h = L.Dropout(0.5, seed=seed)(L.Flatten()(h))
    h = L.Dropout(0.5, seed=seed + 1)(L.ReLU()(L.Linear(256)(h)))
    return Model(x, L.Linear(num_classes)(h), name="alexnet_lrn_cifar")


def build_corenet(name):
    from corenet import models, optim

    if name.startswith("lenet5"):
        model = models.lenet5()
    elif name.startswith("resnet20"):
        model = models.resnet20_cifar(shortcut="B")
    elif name.startswith("mobilenet_v2"):
        model = models.mobilenet_v2(num_classes=10, input_size=64)
    elif name.startswith("efficientnet_b0"):
        model = models.efficientnet_b0(num_classes=10, input_size=64)
    else:
        model = alexnet_lrn_cifar()
    model.compile(optim.SGD(lr=0.01, momentum=0.9), "cross_entropy")
    return model


# ---------------------------------------------------------------------------------- torch twins
def build_torch(name, torch, channels_last=False, training=True):
    nn = torch.nn
    if name.startswith("lenet5"):
        net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    elif name.startswith("resnet20"):
        class Block(nn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.b1 = nn.BatchNorm2d(cout)
                self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.b2 = nn.BatchNorm2d(cout)
                self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                              if stride != 1 or cin != cout else nn.Identity())

            def forward(self, x):
                h = torch.relu(self.b1(self.c1(x)))
                return torch.relu(self.b2(self.c2(h)) + self.short(x))

        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        net = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), *blocks,
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    elif name.startswith(("mobilenet_v2", "efficientnet_b0")):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
        import zoo_twins  # torchvision's MobileNetV2 / EfficientNet-B0 (torchvision is not installed here)

        net = zoo_twins.MobileNetV2(10) if name.startswith("mobilenet_v2") else zoo_twins.EfficientNetB0(10)
    else:
        lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
        net = nn.Sequential(
            nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 128, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
            nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(), nn.Conv2d(192, 128, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, 2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(128 * 3 * 3, 256), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(256, 10))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if not training:
        net.eval()

        def infer(x, y):
            with torch.no_grad():
                return net(x)

        return infer
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    net.train()
    return step


def batch(name, n, rng):
    shape, classes = NETWORKS[name]
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, classes, n)


# ---------------------------------------------------------------------------------- child modes
def _setup(name, framework, backend, threads, n, training=True):
    """A step function for one framework in this (fresh) process."""
    rng = np.random.default_rng(0)
    x, y = batch(name, n, rng)
    if framework.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        step = build_torch(name, torch, channels_last=framework == "torch_cl", training=training)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if framework == "torch_cl":
            xt = xt.contiguous(memory_format=torch.channels_last)
        return lambda: step(xt, yt)
    import corenet

    corenet.set_backend(backend)
    corenet.set_num_threads(threads)
    model = build_corenet(name)
    if training:
        return lambda: model.train_on_batch(x, y)
    return lambda: model.forward(x, training=False)


def child(kind, name, framework, backend, threads, n):
    """Run in a fresh process: one measurement, printed as JSON on the last line."""
    t0 = time.perf_counter()
    run = _setup(name, framework, backend, threads, n, training=kind != "infer")
    run()
    first = time.perf_counter() - t0
    res = {"first_step_s": first}
    if kind in ("time", "infer"):
        for _ in range(WARMUP - 1):
            run()
        times = []
        for _ in range(STEPS):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        res.update(median_ms=1e3 * float(np.median(times)), min_ms=1e3 * min(times))
    if kind == "rss":
        # The step's own footprint: resident memory after imports and the first step (weights,
        # libraries) versus the high-water mark of later steps (activations, workspaces).
        base = _status_kib("VmRSS")
        _reset_peak()
        for _ in range(3):
            run()
        res.update(baseline_mib=base / 1024, peak_rss_mib=_status_kib("VmHWM") / 1024,
                   step_mib=(_status_kib("VmHWM") - base) / 1024,
                   ru_maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(res))


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        pass


def run_child(args, env=None):
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_start(backend, threads):
    """Wall seconds from process start to the end of the first LeNet-5 step: empty, then warm cache."""
    res = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty_cache", "warm_cache"):
            t0 = time.perf_counter()
            run_child(["cold", "lenet5_mnist_b64", "corenet", backend, threads, 64], env=env)
            res[label] = time.perf_counter() - t0
    return res


# ---------------------------------------------------------------------------------- main
WARMUP, STEPS = 3, 12
FRAMEWORKS = ("torch", "torch_cl")


def compare(name, kind, n, backends, threads, rounds, torch_ok):
    """Alternate one process per framework over ``rounds`` rounds; per-round speed ratios."""
    configs = [("corenet", b) for b in backends] + ([(fw, "-") for fw in FRAMEWORKS] if torch_ok else [])
    per_round = []
    for _ in range(rounds):
        per_round.append({f"{fw}:{b}": run_child([kind, name, fw, b, threads, n])["median_ms"] for fw, b in configs})
    out = {"network": name, "kind": kind, "batch": n, "rounds": per_round}
    for b in backends:
        ms = [r[f"corenet:{b}"] for r in per_round]
        row = {"corenet_ms": statistics.median(ms), "corenet_ms_range": (min(ms), max(ms))}
        for fw in FRAMEWORKS if torch_ok else ():
            ratios = [r[f"{fw}:-"] / r[f"corenet:{b}"] for r in per_round]
            tms = [r[f"{fw}:-"] for r in per_round]
            row[f"{fw}_ms"] = statistics.median(tms)
            row[f"vs_{fw}"] = statistics.median(ratios)
            row[f"vs_{fw}_range"] = (min(ratios), max(ratios))
        out[b] = row
    return out


def print_row(res, b, torch_ok):
    r = res[b]
    line = (f"{res['network']:24s} {res['kind']:5s} b{res['batch']:<3d} {b:7s} {r['corenet_ms']:8.2f} "
            f"({r['corenet_ms_range'][0]:.2f}-{r['corenet_ms_range'][1]:.2f})")
    if torch_ok:
        for fw in FRAMEWORKS:
            lo, hi = r[f"vs_{fw}_range"]
            line += f" | {fw} {r[f'{fw}_ms']:7.2f} ms {r[f'vs_{fw}']:5.2f}x ({lo:.2f}-{hi:.2f})"
    print(line, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="auto", help="corenet backend(s), comma-separated, or 'all'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--infer", action="store_true", help="also eval-mode forward at batch 1 and the training batch")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-subprocess", action="store_true", help="skip cold start and peak RSS")
    ap.add_argument("--max-load", type=float, default=0.5, help="warn above this 1-minute load average")
    ap.add_argument("--json")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, name, fw, backend, threads, n = args.child
        return child(kind, name, fw, backend, int(threads), int(n))

    import corenet

    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          + ("" if load[0] <= args.max_load else "  WARNING: the machine is busy; ratios are not trustworthy"))
    if args.backend == "all":
        backends = [b for b in corenet.backends() if b != "cuda"]
    else:
        backends = args.backend.split(",")
    torch_ok = not args.no_torch and H.try_import_torch(args.threads) is not None
    print(f"one process per framework, alternating, {args.rounds} rounds; each process warms up {WARMUP} steps "
          f"and reports the median of {STEPS}; ratios = torch ms / corenet ms per round: median (min-max)")
    results = []
    for name in NETWORKS:
        if args.only and name not in args.only:
            continue
        n_batch = BATCH.get(name, 64)
        for kind, n in [("time", n_batch)] + ([("infer", 1), ("infer", n_batch)] if args.infer else []):
            if kind == "infer" and name.startswith("alexnet"):
                continue
            res = compare(name, kind, n, backends, args.threads, args.rounds, torch_ok)
            for b in backends:
                print_row(res, b, torch_ok)
            results.append(res)
    extra = {"load_average_before": load}
    if not args.no_subprocess:
        for b in backends:
            extra[f"cold_start_{b}"] = cold_start(b, args.threads)
            print(f"cold start to first LeNet-5 step ({b}): "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in extra[f"cold_start_{b}"].items()))
        name = "resnet20_cifar_b64"
        for fw, b in [("corenet", b) for b in backends] + ([("torch", "-")] if torch_ok else []):
            r = run_child(["rss", name, fw, b, args.threads, 64])
            extra[f"rss_{fw}_{b}"] = r
            print(f"memory of the {name} step, {fw} {b}: {r['step_mib']:.0f} MiB above a {r['baseline_mib']:.0f} MiB"
                  f" baseline (process peak {r['peak_rss_mib']:.0f} MiB)")
    H.write_json(args.json, {"machine": H.machine_info(args.threads), "results": results, **extra})


if __name__ == "__main__":
    main()
