"""Operator benchmarks under BENCHMARKS.md's protocol: each framework in its own process.

For each workload (BENCHMARKS.md's list plus ResNet-20's stage convolutions at batch 64), one fresh
process per framework -- corenet (each ``--backend``), PyTorch NCHW, PyTorch channels_last --
alternating over ``--rounds`` rounds. Each process builds its inputs (the same seeded values in
every process), checks its forward output and gradients against a float64 reference computed once
per workload in its own process (PyTorch in float64, or corenet's numba backend in float64 when
torch is missing) and refuses to time a wrong result; then warms up 3 calls and reports the median
of ``--steps`` (>= 10) for the forward pass and for forward + backward (input and weight gradients).

The table gives corenet's median ms, GFLOP/s (convolutions) or GB/s (memory-bound ops), the fraction
of the roof measured at the start of the same run (the FMA peak of a register-bound C loop on
``--threads`` cores, or copy bandwidth), PyTorch's times, and the median of the per-round ratios
torch ms / corenet ms (above 1 = corenet faster) with their min-max spread. The load average is
printed first; above 0.5 the numbers are flagged as untrustworthy.

    python benchmarks/bench_ops.py --threads 2 --rounds 3 --json ops.json
    python benchmarks/bench_ops.py --rounds 1 --only res3x3_64 relu resnet20_s1     # a quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

WARMUP = 3
TOL = 1e-3  # max |got - ref| / max |ref|, per output and gradient, against the float64 reference


class Workload:
    """One operator workload: seeded inputs, the corenet and torch closures, and its cost model."""

    def __init__(self, name, shape, kind, **kw):
        self.name, self.shape, self.kind, self.kw = name, shape, kind, kw

    def describe(self):
        k = self.kw
        if self.kind == "conv":
            g = f" groups {k['groups']}" if k.get("groups", 1) > 1 else ""
            return (f"conv {k['cout']}@{k['k']}x{k['k']} stride {k.get('stride', 1)} pad {k.get('pad', 0)}{g}"
                    + ("" if k.get("bias", True) else ", no bias"))
        if self.kind == "pool":
            return f"{k['mode']} pool {k['k']}x{k['k']} stride {k['stride']}"
        return {"lrn": "LRN across channels, n=5", "batchnorm": "batch norm, training", "relu": "ReLU"}[self.kind]

    def out_shape(self):
        n, c, h, w = self.shape
        k = self.kw
        if self.kind in ("conv", "pool"):
            s, p = k.get("stride", 1), k.get("pad", 0)
            return (n, k.get("cout", c), (h + 2 * p - k["k"]) // s + 1, (w + 2 * p - k["k"]) // s + 1)
        return self.shape

    def inputs(self, dtype=np.float32):
        """The same float32 values in every process (float64 only widens them)."""
        rng = np.random.default_rng(0)
        a = {"x": rng.standard_normal(self.shape, dtype=np.float32)}
        c = self.shape[1]
        if self.kind == "conv":
            fan_in = c // self.kw.get("groups", 1) * self.kw["k"] ** 2
            wshape = (self.kw["cout"], c // self.kw.get("groups", 1), self.kw["k"], self.kw["k"])
            a["w"] = rng.standard_normal(wshape, dtype=np.float32) / np.float32(np.sqrt(fan_in))
            if self.kw.get("bias", True):
                a["b"] = rng.standard_normal(self.kw["cout"], dtype=np.float32)
        if self.kind == "batchnorm":
            a["gamma"] = 1 + 0.1 * rng.standard_normal(c, dtype=np.float32)
            a["beta"] = 0.1 * rng.standard_normal(c, dtype=np.float32)
        a["gy"] = rng.standard_normal(self.out_shape(), dtype=np.float32)
        return {key: v.astype(dtype) for key, v in a.items()}

    # ------------------------------------------------------------------ corenet
    def corenet_fns(self, F, a):
        x, gy, k = a["x"], a["gy"], self.kw
        if self.kind == "conv":
            ca = dict(stride=k.get("stride", 1), padding=k.get("pad", 0), groups=k.get("groups", 1))
            fwd = lambda: F.conv2d(x, a["w"], a.get("b"), **ca)  # noqa: E731

            def fb():
                y, s = F.conv2d(x, a["w"], a.get("b"), return_state=True, **ca)
                return y, F.conv2d_backward(gy, s)
        elif self.kind == "batchnorm":
            c = self.shape[1]
            rm, rv = np.zeros(c, x.dtype), np.ones(c, x.dtype)
            fwd = lambda: F.batch_norm(x, a["gamma"], a["beta"], rm, rv, training=True)  # noqa: E731

            def fb():
                y, s = F.batch_norm(x, a["gamma"], a["beta"], rm, rv, training=True, return_state=True)
                return y, F.batch_norm_backward(gy, s)
        else:
            op, back = {
                "pool": (lambda **r: F.pool2d(x, k["k"], k["stride"], mode=k["mode"], **r), F.pool2d_backward),
                "lrn": (lambda **r: F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=2.0, **r),
                        F.local_response_norm_backward),
                "relu": (lambda **r: F.relu(x, **r), F.relu_backward),
            }[self.kind]
            fwd = op

            def fb():
                y, s = op(return_state=True)
                return y, (back(gy, s),)
        return fwd, fb

    # ------------------------------------------------------------------ torch
    def torch_fns(self, torch, a, channels_last=False):
        tf, k = torch.nn.functional, self.kw

        def t(key, grad=False):
            v = torch.from_numpy(a[key])
            if channels_last and v.dim() == 4:
                v = v.contiguous(memory_format=torch.channels_last)
            return v.requires_grad_(grad)

        x, xg, gy = t("x"), t("x", True), t("gy")
        params, grads = [], [xg]
        if self.kind == "conv":
            w, wg = t("w"), t("w", True)
            b, bg = (t("b"), t("b", True)) if "b" in a else (None, None)
            grads += [wg] + ([bg] if bg is not None else [])
            ca = dict(stride=k.get("stride", 1), padding=k.get("pad", 0), groups=k.get("groups", 1))
            op = lambda x_, g_: tf.conv2d(x_, *((wg, bg) if g_ else (w, b)), **ca)  # noqa: E731
        elif self.kind == "pool":
            pool = tf.max_pool2d if k["mode"] == "max" else tf.avg_pool2d
            op = lambda x_, g_: pool(x_, k["k"], k["stride"])  # noqa: E731
        elif self.kind == "lrn":
            op = lambda x_, g_: tf.local_response_norm(x_, 5, alpha=1e-4, beta=0.75, k=2.0)  # noqa: E731
        elif self.kind == "batchnorm":
            c = self.shape[1]
            params = [t("gamma"), t("beta"), t("gamma", True), t("beta", True)]
            grads += params[2:]
            rm, rv = torch.zeros(c, dtype=x.dtype), torch.ones(c, dtype=x.dtype)
            op = lambda x_, g_: tf.batch_norm(x_, rm, rv, *params[2 * g_:2 * g_ + 2], training=True)  # noqa: E731
        else:
            op = lambda x_, g_: tf.relu(x_)  # noqa: E731

        def fwd():
            with torch.no_grad():
                return op(x, False)

        def fb():
            for g in grads:
                g.grad = None
            y = op(xg, True)
            y.backward(gy)
            return y, tuple(g.grad for g in grads)
        return fwd, fb

    # ------------------------------------------------------------------ cost model
    def cost(self):
        """(forward units, fwd+bwd units, unit): FLOPs for conv, minimal bytes moved otherwise."""
        out = int(np.prod(self.out_shape()))
        if self.kind == "conv":
            macs = out * self.shape[1] // self.kw.get("groups", 1) * self.kw["k"] ** 2
            return 2 * macs, 6 * macs, "GFLOP/s"
        x, isz = int(np.prod(self.shape)), 4
        fwd = (x + out) * isz  # read x, write y
        bwd = (out + x) * isz  # read gy, write gx
        if self.kind in ("lrn", "batchnorm"):
            bwd += x * isz  # backward also re-reads x (or y)
        if self.kind == "pool" and self.kw["mode"] == "max":
            bwd += out * 4  # argmax indices
        return fwd, fwd + bwd, "GB/s"


WORKLOADS = [
    Workload("lenet_c1", (64, 1, 28, 28), "conv", cout=6, k=5, pad=2),
    Workload("lenet_c2", (64, 6, 14, 14), "conv", cout=16, k=5),
    Workload("res3x3_64", (32, 64, 32, 32), "conv", cout=64, k=3, pad=1),
    Workload("res3x3_s2", (32, 64, 32, 32), "conv", cout=128, k=3, stride=2, pad=1),
    Workload("alex_c1", (8, 3, 227, 227), "conv", cout=96, k=11, stride=4),
    Workload("bottleneck_1x1", (32, 256, 16, 16), "conv", cout=64, k=1),
    Workload("depthwise_3x3", (32, 128, 32, 32), "conv", cout=128, k=3, pad=1, groups=128),
    Workload("resnet20_s1", (64, 16, 32, 32), "conv", cout=16, k=3, pad=1, bias=False),
    Workload("resnet20_s2", (64, 32, 16, 16), "conv", cout=32, k=3, pad=1, bias=False),
    Workload("resnet20_s3", (64, 64, 8, 8), "conv", cout=64, k=3, pad=1, bias=False),
    Workload("resnet20_down", (64, 16, 32, 32), "conv", cout=32, k=3, stride=2, pad=1, bias=False),
    # MobileNetV2 / EfficientNet-B0 at 3x64x64, batch 16 (bench_train's zoo rows): the stem, depthwise
    # 3x3 / 5x5 on 32..2 px maps, pointwise expand/project on 4x4 and 2x2, squeeze-excitation on 1x1
    Workload("zoo_stem", (16, 3, 64, 64), "conv", cout=32, k=3, stride=2, pad=1, bias=False),
    Workload("zoo_dw3s2_32px", (16, 96, 32, 32), "conv", cout=96, k=3, stride=2, pad=1, groups=96, bias=False),
    Workload("zoo_dw3_16px", (16, 144, 16, 16), "conv", cout=144, k=3, pad=1, groups=144, bias=False),
    Workload("zoo_dw3_4px", (16, 576, 4, 4), "conv", cout=576, k=3, pad=1, groups=576, bias=False),
    Workload("zoo_dw3_2px", (16, 960, 2, 2), "conv", cout=960, k=3, pad=1, groups=960, bias=False),
    Workload("zoo_dw5s2_4px", (16, 672, 4, 4), "conv", cout=672, k=5, stride=2, pad=2, groups=672, bias=False),
    Workload("zoo_dw5_2px", (16, 1152, 2, 2), "conv", cout=1152, k=5, pad=2, groups=1152, bias=False),
    Workload("zoo_pw_4px", (16, 96, 4, 4), "conv", cout=576, k=1, bias=False),
    Workload("zoo_pw_2px", (16, 960, 2, 2), "conv", cout=160, k=1, bias=False),
    Workload("zoo_se_1px", (16, 1152, 1, 1), "conv", cout=48, k=1),
    Workload("maxpool3s2", (32, 96, 55, 55), "pool", mode="max", k=3, stride=2),
    Workload("avgpool2s2", (32, 96, 55, 55), "pool", mode="avg", k=2, stride=2),
    Workload("lrn5", (32, 96, 55, 55), "lrn"),
    Workload("batchnorm", (32, 96, 55, 55), "batchnorm"),
    Workload("relu", (32, 96, 55, 55), "relu"),
]
BY_NAME = {w.name: w for w in WORKLOADS}
FRAMEWORKS = {"torch": "torch NCHW", "torch_cl": "torch channels_last"}


# ---------------------------------------------------------------------------------- children
def _np(v):
    return v.detach().numpy() if hasattr(v, "detach") else np.asarray(v)


def _flatten(res):
    y, grads = res
    return [_np(y)] + [_np(g) for g in grads if g is not None]


def _fns(wl, framework, backend, threads, dtype):
    a = wl.inputs(dtype)
    if framework.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        return wl.torch_fns(torch, a, channels_last=framework == "torch_cl")
    import corenet
    from corenet import functional as F

    corenet.set_backend(backend)
    corenet.set_num_threads(threads)
    return wl.corenet_fns(F, a)


def child_ref(name, framework, threads, path):
    """The float64 reference of one workload (forward output and every gradient), saved to ``path``."""
    _, fb = _fns(BY_NAME[name], framework, "numba", threads, np.float64)
    np.savez(path, *_flatten(fb()))
    print(json.dumps({"ok": True}))


def child_time(name, framework, backend, threads, ref_path, steps):
    """Check against the reference, then time: one framework in this fresh process."""
    fwd, fb = _fns(BY_NAME[name], framework, backend, threads, np.float32)
    got = _flatten(fb())
    with np.load(ref_path) as z:
        ref = [z[f"arr_{i}"] for i in range(len(z.files))]
    if len(got) != len(ref):
        sys.exit(f"{name}/{framework}:{backend}: {len(got)} results, the reference has {len(ref)}: not timed")
    errs = []
    for i, (g, r) in enumerate(zip(got, ref)):
        label = "output" if i == 0 else f"gradient {i}"
        if g.shape != r.shape:
            sys.exit(f"{name}/{framework}:{backend}: {label} has shape {g.shape}, expected {r.shape}: not timed")
        err = float(np.abs(g.astype(np.float64) - r).max()) / max(float(np.abs(r).max()), 1e-30)
        if not np.isfinite(err) or err > TOL:
            sys.exit(f"{name}/{framework}:{backend}: WRONG {label}: max |got - ref| / max |ref| = {err:.2e} "
                     f"> {TOL:g} against the float64 reference: not timed")
        errs.append(err)
    res = {"max_err": max(errs)}
    for key, fn in (("fwd_ms", fwd), ("fb_ms", fb)):
        for _ in range(WARMUP):
            fn()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        res[key] = 1e3 * statistics.median(times)
    print(json.dumps(res))


def child_roofs(threads):
    fma, isa = H.fma_peak_gflops(threads)
    res = {"fma_gflops": fma, "fma_isa": isa, "copy_gbs": H.copy_roof_gbs(), "gemm_gflops": H.gemm_roof_gflops()}
    if fma is not None and isa.startswith("avx512"):
        res["fma256_gflops"] = H.fma_peak_gflops(threads, bits=256)[0]
    if fma is not None and threads > 1:
        res["fma1_gflops"] = H.fma_peak_gflops(1)[0]
    print(json.dumps(res))


def run_child(args, env=None):
    return H.run_child(os.path.abspath(__file__), args, env)


# ---------------------------------------------------------------------------------- parent
def measure(wl, configs, args, tmp, ref_fw):
    ref_path = os.path.join(tmp, f"{wl.name}.npz")
    _, err = run_child(["ref", wl.name, ref_fw, args.threads, ref_path])
    if err:
        return {"workload": wl.name, "error": f"reference ({ref_fw}, float64) failed: {err}"}
    rounds = []
    for _ in range(args.rounds):
        rnd = {}
        for fw, b in configs:
            res, err = run_child(["time", wl.name, fw, b, args.threads, ref_path, args.steps])
            if err:
                return {"workload": wl.name, "error": f"{fw}:{b}: {err}", "rounds": rounds}
            rnd[f"{fw}:{b}"] = res
        rounds.append(rnd)
    out = {"workload": wl.name, "shape": wl.shape, "op": wl.describe(), "rounds": rounds, "configs": {}}
    for key in rounds[0]:
        out["configs"][key] = {m: H.spread([r[key][m] for r in rounds]) for m in ("fwd_ms", "fb_ms")}
        out["configs"][key]["max_err"] = max(r[key]["max_err"] for r in rounds)
    for fw, b in configs:
        if fw == "corenet":
            for tfw in (f for f in FRAMEWORKS if f"{f}:-" in rounds[0]):
                out[f"{b}_vs_{tfw}"] = {m: H.spread([r[f"{tfw}:-"][m] / r[f"corenet:{b}"][m] for r in rounds])
                                        for m in ("fwd_ms", "fb_ms")}
    return out


def report(wl, out, roofs):
    if "error" in out:
        print(f"{wl.name}: NOT REPORTED -- {out['error']}", flush=True)
        return
    fwd_u, fb_u, unit = wl.cost()
    roof = roofs["copy_gbs"] if unit == "GB/s" else roofs["fma_gflops"] or roofs["gemm_gflops"]
    print(f"\n{wl.name}: {wl.shape} {wl.describe()}; fwd {fwd_u / 1e9:.3g} {unit[:-2]}, f+b {fb_u / 1e9:.3g}")
    print(f"  {'':22s} {'fwd ms':>8s} {unit:>8s} {'roof':>4s} | {'f+b ms':>8s} {unit:>8s} {'roof':>4s} | max err")
    for key, c in out["configs"].items():
        fw, b = key.split(":")
        label = f"corenet {b}" if fw == "corenet" else FRAMEWORKS[fw]
        f, fb = c["fwd_ms"][0], c["fb_ms"][0]
        rf, rfb = fwd_u / f / 1e6, fb_u / fb / 1e6
        print(f"  {label:22s} {f:8.2f} {rf:8.1f} {rf / roof:4.0%} | {fb:8.2f} {rfb:8.1f} {rfb / roof:4.0%} |"
              f" {c['max_err']:.0e}")
    for key, r in out.items():
        if "_vs_" in key:
            b, tfw = key.split("_vs_")
            (mf, lf, hf), (mb, lb, hb) = r["fwd_ms"], r["fb_ms"]
            print(f"  {b + ' vs ' + FRAMEWORKS[tfw]:34s} fwd {mf:5.2f}x ({lf:.2f}-{hf:.2f})"
                  f"   f+b {mb:5.2f}x ({lb:.2f}-{hb:.2f})")
    sys.stdout.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="auto",
                    help="corenet backend(s), comma-separated; 'all' = every CPU backend (default: auto)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="timed calls per process (>= 10)")
    ap.add_argument("--only", nargs="*", help="workload names: " + " ".join(BY_NAME))
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--max-load", type=float, default=0.5, help="warn above this 1-minute load average")
    ap.add_argument("--json", help="write the results to this path")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "roofs":
            return child_roofs(int(rest[0]))
        if kind == "ref":
            return child_ref(rest[0], rest[1], int(rest[2]), rest[3])
        name, fw, b, threads, ref, steps = rest
        return child_time(name, fw, b, int(threads), ref, int(steps))

    line, load = H.load_line(args.max_load)
    print(line, flush=True)
    if args.steps < 10 or args.rounds < 1:
        ap.error("--steps must be at least 10 (the protocol) and --rounds at least 1")
    unknown = [n for n in args.only or () if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; known: {' '.join(BY_NAME)}")
    import corenet

    cpu = [b for b in corenet.backends() if b != "cuda"]
    backends = cpu if args.backend == "all" else args.backend.split(",")
    if set(backends) - set(corenet.backends()):
        ap.error(f"backend(s) {sorted(set(backends) - set(corenet.backends()))} not available: {corenet.backends()}")
    torch_ok = not args.no_torch and importlib.util.find_spec("torch") is not None
    configs = [("corenet", b) for b in backends] + ([(fw, "-") for fw in FRAMEWORKS] if torch_ok else [])
    ref_fw = "torch" if torch_ok else "corenet"
    print(f"{args.threads} threads; one process per framework ({', '.join(f'{f}:{b}' for f, b in configs)}), "
          f"alternating over {args.rounds} rounds; each checks against a float64 reference "
          f"({'PyTorch' if torch_ok else 'corenet numba'}), warms up {WARMUP} calls and reports the median of "
          f"{args.steps}; ratios = torch ms / corenet ms per round: median (min-max)")
    if not torch_ok and not args.no_torch:
        print("torch is not importable (pip install -e '.[bench]'): no comparison; the reference is corenet numba"
              " in float64")

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    roofs, err = run_child(["roofs", args.threads], env=env)
    if err:
        sys.exit(f"measuring the roofs failed: {err}")
    fma = roofs["fma_gflops"]
    if fma is None:
        print(f"FMA peak NOT MEASURED ({roofs['fma_isa']}): convolutions use numpy's GEMM as the roof")
    else:
        print(f"FMA peak ({args.threads} threads): {fma:.0f} GFLOP/s, {roofs['fma_isa']}"
              + "".join(f"; {k}: {roofs[v]:.0f}" for k, v in (("256-bit", "fma256_gflops"),
                                                              ("1 thread", "fma1_gflops")) if v in roofs))
        if "fma1_gflops" in roofs and fma < 0.9 * args.threads * roofs["fma1_gflops"]:
            print(f"  WARNING: below {args.threads} x the 1-thread peak: the cores are shared with other work")
    print(f"copy {roofs['copy_gbs']:.1f} GB/s (read + write); numpy GEMM 2048^3 {roofs['gemm_gflops']:.0f} GFLOP/s"
          + (" (not the roof)" if fma else " (the roof for convolutions here)"))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for wl in WORKLOADS:
            if args.only and wl.name not in args.only:
                continue
            out = measure(wl, configs, args, tmp, ref_fw)
            report(wl, out, roofs)
            results.append(out)
    after, _ = H.load_line(args.max_load)
    print("\n" + after.replace("before", "after"))
    H.write_json(args.json, {"machine": H.machine_info(args.threads), "load_average_before": load,
                             "load_average_after": os.getloadavg(), "roofs": roofs, "rounds": args.rounds,
                             "steps": args.steps, "results": results})
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
