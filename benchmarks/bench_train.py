"""Training-step benchmarks: BENCHMARKS.md's three networks, corenet against PyTorch in one run.

For each network: images/s of a full step (forward, loss, backward, SGD-momentum update) on a
synthetic batch, with PyTorch's time for the same network, batch and thread count measured
interleaved; then, each in a fresh child process, peak resident memory of a step and the cold
start (process start -> end of the first LeNet-5 step) with an empty and a warm Numba cache.

    python benchmarks/bench_train.py --threads 2 --backend all --json train.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
}


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
    else:
        model = alexnet_lrn_cifar()
    model.compile(optim.SGD(lr=0.01, momentum=0.9), "cross_entropy")
    return model


# ---------------------------------------------------------------------------------- torch twins
def build_torch(name, torch):
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
    else:
        lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
        net = nn.Sequential(
            nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 128, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(**lrn), nn.MaxPool2d(3, 2),
            nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(), nn.Conv2d(192, 128, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, 2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(128 * 3 * 3, 256), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(256, 10))
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
def child(kind, name, framework, backend, threads, n):
    """Run in a fresh process: one measurement, printed as JSON on the last line."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    x, y = batch(name, n, rng)
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        step = build_torch(name, torch)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        run = lambda: step(xt, yt)  # noqa: E731
    else:
        import corenet

        corenet.set_backend(backend)
        corenet.set_num_threads(threads)
        model = build_corenet(name)
        run = lambda: model.train_on_batch(x, y)  # noqa: E731
    run()
    first = time.perf_counter() - t0
    res = {"first_step_s": first}
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
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-subprocess", action="store_true", help="skip cold start and peak RSS")
    ap.add_argument("--json")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, name, fw, backend, threads, n = args.child
        return child(kind, name, fw, backend, int(threads), int(n))

    import corenet

    corenet.set_num_threads(args.threads)
    backends = [b for b in corenet.backends() if b != "cuda"] if args.backend == "all" else [args.backend]
    torch = None if args.no_torch else H.try_import_torch(args.threads)
    rows = []
    print(f"{'network':24s} {'backend':7s} {'ms/step':>8s} {'img/s':>8s} {'torch ms':>9s} {'speed':>7s}")
    for name in NETWORKS:
        if args.only and name not in args.only:
            continue
        x, y = batch(name, 64, np.random.default_rng(0))
        fns = {}
        for b in backends:
            corenet.set_backend(b)
            model = build_corenet(name)

            def step(model=model, b=b, x=x, y=y):
                corenet.set_backend(b)
                model.train_on_batch(x, y)

            fns[b] = step
        if torch is not None:
            tstep = build_torch(name, torch)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            fns["torch"] = lambda tstep=tstep, xt=xt, yt=yt: tstep(xt, yt)
        t = H.interleaved_ms(fns, args.repeat, warmup=2)
        for b in backends:
            row = dict(network=name, backend=b, ms_per_step=t[b], images_per_s=64e3 / t[b])
            line = f"{name:24s} {b:7s} {t[b]:8.1f} {row['images_per_s']:8.0f}"
            if torch is not None:
                row.update(torch_ms_per_step=t["torch"], speedup=t["torch"] / t[b])
                line += f" {t['torch']:9.1f} {row['speedup']:6.2f}x"
            print(line, flush=True)
            rows.append(row)
    extra = {}
    if not args.no_subprocess:
        for b in backends:
            extra[f"cold_start_{b}"] = cold_start(b, args.threads)
            print(f"cold start to first LeNet-5 step ({b}): "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in extra[f"cold_start_{b}"].items()))
        name = "resnet20_cifar_b64"
        for fw, b in [("corenet", b) for b in backends] + ([("torch", "-")] if torch is not None else []):
            r = run_child(["rss", name, fw, b, args.threads, 64])
            extra[f"rss_{fw}_{b}"] = r
            print(f"memory of the {name} step, {fw} {b}: {r['step_mib']:.0f} MiB above a {r['baseline_mib']:.0f} MiB"
                  f" baseline (process peak {r['peak_rss_mib']:.0f} MiB)")
    H.write_json(args.json, {"machine": H.machine_info(args.threads), "results": rows, **extra})


if __name__ == "__main__":
    main()
