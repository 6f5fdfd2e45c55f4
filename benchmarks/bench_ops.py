"""Operator benchmarks: the workloads of BENCHMARKS.md, forward and forward+backward, per backend.

Every result is checked before it is timed: against PyTorch when it is importable, else against
the first backend measured (or a numpy reference for the forward pass). The table gives median
ms, the achieved GFLOP/s (convolutions) or GB/s (memory-bound ops), the fraction of this
machine's roof measured at the start of the same run, and with ``--torch`` PyTorch's time for
the same workload measured interleaved and the speed ratio (>1 means corenet is faster).

    python benchmarks/bench_ops.py --threads 2 --backend all --torch --json ops.json
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _harness as H  # noqa: E402

import corenet  # noqa: E402
from corenet import functional as F  # noqa: E402


class Workload:
    """One operator workload: inputs, corenet fwd / fwd+bwd closures, the torch twin, cost model."""

    def __init__(self, name, shape, kind, **kw):
        self.name, self.shape, self.kind, self.kw = name, shape, kind, kw

    # ------------------------------------------------------------------ inputs
    def make(self, rng, dtype=np.float32):
        x = rng.standard_normal(self.shape).astype(dtype)
        self.x = x
        if self.kind == "conv":
            cin = self.shape[1]
            g = self.kw.get("groups", 1)
            k = self.kw["k"]
            self.w = (rng.standard_normal((self.kw["cout"], cin // g, k, k)) / np.sqrt(cin // g * k * k)).astype(dtype)
            self.b = rng.standard_normal(self.kw["cout"]).astype(dtype)
        if self.kind == "batchnorm":
            c = self.shape[1]
            self.gamma = np.ones(c, dtype)
            self.beta = np.zeros(c, dtype)
        y = self.fwd()
        self.gy = rng.standard_normal(y.shape).astype(dtype)
        return self

    # ------------------------------------------------------------------ corenet
    def _conv_args(self):
        return dict(stride=self.kw.get("stride", 1), padding=self.kw.get("pad", 0), groups=self.kw.get("groups", 1))

    def fwd(self):
        k = self.kind
        if k == "conv":
            return F.conv2d(self.x, self.w, self.b, **self._conv_args())
        if k == "pool":
            return F.pool2d(self.x, self.kw["k"], self.kw["stride"], mode=self.kw["mode"])
        if k == "lrn":
            return F.local_response_norm(self.x, 5, alpha=1e-4, beta=0.75, k=2.0)
        if k == "batchnorm":
            c = self.shape[1]
            return F.batch_norm(self.x, self.gamma, self.beta, np.zeros(c, self.x.dtype), np.ones(c, self.x.dtype),
                                training=True)
        if k == "relu":
            return F.relu(self.x)
        raise ValueError(k)

    def fwdbwd(self):
        k = self.kind
        if k == "conv":
            y, s = F.conv2d(self.x, self.w, self.b, return_state=True, **self._conv_args())
            return y, F.conv2d_backward(self.gy, s)
        if k == "pool":
            y, s = F.pool2d(self.x, self.kw["k"], self.kw["stride"], mode=self.kw["mode"], return_state=True)
            return y, (F.pool2d_backward(self.gy, s),)
        if k == "lrn":
            y, s = F.local_response_norm(self.x, 5, alpha=1e-4, beta=0.75, k=2.0, return_state=True)
            return y, (F.local_response_norm_backward(self.gy, s),)
        if k == "batchnorm":
            c = self.shape[1]
            y, s = F.batch_norm(self.x, self.gamma, self.beta, np.zeros(c, self.x.dtype), np.ones(c, self.x.dtype),
                                training=True, return_state=True)
            return y, F.batch_norm_backward(self.gy, s)
        if k == "relu":
            y, s = F.relu(self.x, return_state=True)
            return y, (F.relu_backward(self.gy, s),)
        raise ValueError(k)

    # ------------------------------------------------------------------ torch twin
    def torch_fns(self, torch):
        tf = torch.nn.functional
        x = torch.from_numpy(self.x)
        xg = x.clone().requires_grad_(True)
        gy = torch.from_numpy(self.gy)
        k = self.kind
        if k == "conv":
            w = torch.from_numpy(self.w)
            wg = w.clone().requires_grad_(True)
            b = torch.from_numpy(self.b)
            bg = b.clone().requires_grad_(True)
            a = dict(stride=self.kw.get("stride", 1), padding=self.kw.get("pad", 0), groups=self.kw.get("groups", 1))

            def f():
                return tf.conv2d(x, w, b, **a)

            def fb():
                xg.grad = wg.grad = bg.grad = None
                y = tf.conv2d(xg, wg, bg, **a)
                y.backward(gy)
                return y, (xg.grad, wg.grad, bg.grad)
        elif k == "pool":
            op = tf.max_pool2d if self.kw["mode"] == "max" else tf.avg_pool2d

            def f():
                return op(x, self.kw["k"], self.kw["stride"])

            def fb():
                xg.grad = None
                y = op(xg, self.kw["k"], self.kw["stride"])
                y.backward(gy)
                return y, (xg.grad,)
        elif k == "lrn":
            def f():
                return tf.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=2.0)

            def fb():
                xg.grad = None
                y = tf.local_response_norm(xg, 5, alpha=1e-4, beta=0.75, k=2.0)
                y.backward(gy)
                return y, (xg.grad,)
        elif k == "batchnorm":
            c = self.shape[1]
            gam = torch.ones(c, requires_grad=True)
            bet = torch.zeros(c, requires_grad=True)

            def f():
                return tf.batch_norm(x, torch.zeros(c), torch.ones(c), gam.detach(), bet.detach(), training=True)

            def fb():
                xg.grad = gam.grad = bet.grad = None
                y = tf.batch_norm(xg, torch.zeros(c), torch.ones(c), gam, bet, training=True)
                y.backward(gy)
                return y, (xg.grad, gam.grad, bet.grad)
        else:
            def f():
                return tf.relu(x)

            def fb():
                xg.grad = None
                y = tf.relu(xg)
                y.backward(gy)
                return y, (xg.grad,)
        return f, fb

    # ------------------------------------------------------------------ cost model
    def cost(self, y):
        """(forward units, fwd+bwd units, unit): FLOPs for conv, minimal bytes moved otherwise."""
        if self.kind == "conv":
            n, cin = self.shape[:2]
            g = self.kw.get("groups", 1)
            k = self.kw["k"]
            macs = y.size * (cin // g) * k * k
            return 2 * macs, 6 * macs, "GFLOP/s"
        isz = self.x.itemsize
        fwd = (self.x.size + y.size) * isz  # read x, write y
        bwd = (y.size + self.x.size) * isz  # read gy, write gx
        if self.kind in ("lrn", "batchnorm"):
            bwd += self.x.size * isz  # backward also re-reads x (or y)
        if self.kind == "pool" and self.kw["mode"] == "max":
            bwd += y.size * 4  # argmax indices
        return fwd, fwd + bwd, "GB/s"


WORKLOADS = [
    Workload("lenet_c1", (64, 1, 28, 28), "conv", cout=6, k=5, pad=2),
    Workload("lenet_c2", (64, 6, 14, 14), "conv", cout=16, k=5),
    Workload("res3x3_64", (32, 64, 32, 32), "conv", cout=64, k=3, pad=1),
    Workload("res3x3_s2", (32, 64, 32, 32), "conv", cout=128, k=3, stride=2, pad=1),
    Workload("alex_c1", (8, 3, 227, 227), "conv", cout=96, k=11, stride=4),
    Workload("bottleneck_1x1", (32, 256, 16, 16), "conv", cout=64, k=1),
    Workload("depthwise_3x3", (32, 128, 32, 32), "conv", cout=128, k=3, pad=1, groups=128),
    Workload("maxpool3s2", (32, 96, 55, 55), "pool", mode="max", k=3, stride=2),
    Workload("avgpool2s2", (32, 96, 55, 55), "pool", mode="avg", k=2, stride=2),
    Workload("lrn5", (32, 96, 55, 55), "lrn"),
    Workload("batchnorm", (32, 96, 55, 55), "batchnorm"),
    Workload("relu", (32, 96, 55, 55), "relu"),
]


def _as_np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def check(name, got, ref, rtol=2e-3, atol=2e-3):
    """Fail loudly (before timing) when a result disagrees with its reference."""
    y, grads = got
    ry, rgrads = ref
    pairs = [("y", y, ry)] + [(f"grad{i}", g, r) for i, (g, r) in enumerate(zip(grads, rgrads)) if g is not None]
    for label, a, b in pairs:
        a, b = _as_np(a), _as_np(b)
        scale = max(1.0, float(np.abs(b).max()))
        err = float(np.abs(a.astype(np.float64) - b).max()) / scale
        if not np.isfinite(err) or err > max(rtol, atol):
            raise SystemExit(f"{name}: {label} disagrees with the reference (max scaled error {err:.2e})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="all", help="numba, cython, cuda or all (every available CPU backend)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--only", nargs="*", help="workload names to run")
    ap.add_argument("--torch", action="store_true", help="also time PyTorch's CPU build, interleaved")
    ap.add_argument("--json", help="write the results to this path")
    args = ap.parse_args(argv)

    corenet.set_num_threads(args.threads)
    names = [b for b in corenet.backends() if b != "cuda"] if args.backend == "all" else [args.backend]
    torch = H.try_import_torch(args.threads) if args.torch else None
    if args.torch and torch is None:
        print("torch is not importable: install the bench extra (pip install -e '.[bench]')")
    gemm = H.gemm_roof_gflops()
    bw = H.copy_roof_gbs()
    print(f"roofs: GEMM {gemm:.0f} GFLOP/s, copy {bw:.1f} GB/s ({args.threads} threads)")

    rows = []
    head = f"{'workload':15s} {'backend':7s} {'fwd ms':>8s} {'f+b ms':>8s} {'f+b rate':>14s} {'roof':>5s}"
    if torch:
        head += f" {'torch fwd':>9s} {'torch f+b':>9s} {'speed fwd':>9s} {'speed f+b':>9s}"
    print(head)
    for wl in WORKLOADS:
        if args.only and wl.name not in args.only:
            continue
        wl.make(np.random.default_rng(0))
        reference = None
        if torch:
            tf_fwd, tf_fb = wl.torch_fns(torch)
            reference = tf_fb()
        for name in names:
            corenet.set_backend(name)
            got = wl.fwdbwd()  # also compiles
            if reference is None:
                reference = got
            else:
                check(f"{wl.name}/{name}", got, reference)
            fns = {"fwd": wl.fwd, "fb": wl.fwdbwd}
            if torch:
                fns.update(tfwd=tf_fwd, tfb=tf_fb)
            t = H.interleaved_ms(fns, args.repeat)
            units_f, units_fb, unit = wl.cost(got[0])
            rate = units_fb / (t["fb"] * 1e-3) / 1e9
            roof = rate / (gemm if unit == "GFLOP/s" else bw)
            row = dict(workload=wl.name, backend=name, fwd_ms=t["fwd"], fwdbwd_ms=t["fb"], rate=rate, unit=unit,
                       roof_fraction=roof)
            line = f"{wl.name:15s} {name:7s} {t['fwd']:8.2f} {t['fb']:8.2f} {rate:8.1f} {unit:>5s} {roof:5.0%}"
            if torch:
                row.update(torch_fwd_ms=t["tfwd"], torch_fwdbwd_ms=t["tfb"],
                           speedup_fwd=t["tfwd"] / t["fwd"], speedup_fwdbwd=t["tfb"] / t["fb"])
                line += (f" {t['tfwd']:9.2f} {t['tfb']:9.2f} {row['speedup_fwd']:8.2f}x"
                         f" {row['speedup_fwdbwd']:8.2f}x")
            print(line, flush=True)
            rows.append(row)
    H.write_json(args.json, {"machine": H.machine_info(args.threads), "gemm_gflops": gemm, "copy_gbs": bw,
                             "results": rows})


if __name__ == "__main__":
    main()
