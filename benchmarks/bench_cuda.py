"""CUDA operator benchmarks: corenet's cuda kernels on device-resident arrays against PyTorch (cuDNN).

The BENCHMARKS.md operator workloads, convolutions scaled to batch 256, float32. Every workload is
first checked against the numba CPU backend on its first two images; then forward and
forward+backward are timed (median of ``--repeat`` runs, ``cuda.synchronize()`` around each, no
host copies inside the timed region) next to PyTorch on the same GPU with TF32 off and on.
Convolutions report TFLOP/s (2 * MACs per pass, 3x for forward+backward); the rest GB/s of
compulsory traffic.

    python benchmarks/bench_cuda.py --json cuda_ops.json          # on a machine with a GPU
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_cuda.py --smoke  # the script's own check, no GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import corenet
from corenet import kernels

CONV = {  # name: (x shape at batch 256, C_out, k, stride, pad, groups)
    "res3x3_64": ((256, 64, 32, 32), 64, 3, 1, 1, 1),
    "res3x3_s2": ((256, 64, 32, 32), 128, 3, 2, 1, 1),
    "alex_c1": ((256, 3, 227, 227), 96, 11, 4, 0, 1),
    "bottleneck_1x1": ((256, 256, 16, 16), 64, 1, 1, 0, 1),
    "depthwise_3x3": ((256, 128, 32, 32), 128, 3, 1, 1, 128),
}
OTHER = {"maxpool3s2": (32, 96, 55, 55), "lrn5": (32, 96, 55, 55), "batchnorm": (32, 96, 55, 55),
         "relu": (32, 96, 55, 55)}


def _sync_ms(fn, repeat, cuda):
    fn()
    cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _conv_case(shape, co, k, s, p, g, K, cpu_conv):
    """(fwd, fwd+bwd) closures on device arrays, a check against the CPU backend, MACs."""
    from numba import cuda

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = (rng.standard_normal((co, shape[1] // g, k, k)) * 0.1).astype(np.float32)
    geo = ((s, s), (p, p, p, p), (1, 1), g)
    dx, dw = cuda.to_device(x), cuda.to_device(w)
    y = K.conv.conv2d_forward(dx, dw, None, *geo)
    dgy = cuda.to_device(np.ones(y.shape, np.float32))
    ref = cpu_conv.conv2d_forward(x[:2], w, None, *geo)
    np.testing.assert_allclose(y.copy_to_host()[:2], ref, rtol=1e-3, atol=1e-3)
    macs = y.size * (shape[1] // g) * k * k
    return (lambda: K.conv.conv2d_forward(dx, dw, None, *geo),
            lambda: (K.conv.conv2d_forward(dx, dw, None, *geo),
                     K.conv.conv2d_backward(dx, dw, dgy, *geo, True, True, False)), macs, x, w)


def _torch_conv(torch, x, w, s, p, g):
    tf = torch.nn.functional
    tx = torch.from_numpy(x).cuda().requires_grad_(True)
    tw = torch.from_numpy(w).cuda().requires_grad_(True)

    def fb():
        y = tf.conv2d(tx, tw, None, s, p, 1, g)
        y.backward(torch.ones_like(y))

    return (lambda: tf.conv2d(tx, tw, None, s, p, 1, g)), fb


def _other_case(name, shape, K, cuda):
    """A forward closure on device arrays for a bandwidth-bound workload, and its compulsory bytes."""
    x = cuda.to_device(np.random.default_rng(1).standard_normal(shape, dtype=np.float32))
    y = cuda.device_array(shape, np.float32)
    N, C, H, W = shape
    if name == "maxpool3s2":
        ho, wo = (H - 3) // 2 + 1, (W - 3) // 2 + 1
        py, idx = cuda.device_array((N, C, ho, wo), np.float32), cuda.device_array((N, C, ho, wo), np.int32)
        nbytes = x.size * 4 + py.size * 8  # read x, write y and the argmax
        return (lambda: K.pool.extreme_pool_forward(x, py, idx, 3, 3, 2, 2, 0, 0, 1, 1, False)), nbytes
    if name == "lrn5":
        sc = cuda.device_array(shape, np.float32)
        return (lambda: K.lrn.lrn_across_forward(x, y, sc, 5, 1e-4 / 5, 0.75, 2.0)), x.size * 12
    if name == "batchnorm":
        x3 = x.reshape(N, C, H * W)
        return (lambda: K.norm.bn_stats(x3)), x.size * 4
    flat, out = x.reshape(-1), y.reshape(-1)
    return (lambda: K.act.relu_forward(flat, out)), x.size * 8


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, one run: checks the script (simulator)")
    ap.add_argument("--json", help="write the results to this path")
    args = ap.parse_args(argv)
    reason = kernels.status()["cuda"]
    if reason is not None:
        print(f"cuda backend unavailable: {reason}")
        return 1
    from numba import cuda

    from corenet.kernels.numba_cpu import conv as cpu_conv

    K = kernels.require("cuda")
    torch = None
    try:
        import torch as _torch

        torch = _torch if _torch.cuda.is_available() else None
    except ImportError:
        pass
    repeat = 1 if args.smoke else args.repeat
    rows = []
    print(f"{'workload':15s} {'fwd ms':>8s} {'f+b ms':>8s} {'TFLOP/s':>8s} {'torch fp32':>10s} {'torch tf32':>10s} "
          f"{'vs fp32':>7s} {'vs tf32':>7s}")
    for name, (shape, co, k, s, p, g) in CONV.items():
        if args.smoke:
            shape = (2, 4, 9, 9)
            co, k, g = (4, min(k, 3), 4 if g > 1 else 1)
        fwd, fb, macs, x, w = _conv_case(shape, co, k, s, p, g, K, cpu_conv)
        t_f, t_fb = _sync_ms(fwd, repeat, cuda), _sync_ms(fb, repeat, cuda)
        row = dict(workload=name, fwd_ms=t_f, fwdbwd_ms=t_fb, tflops_fb=3 * 2 * macs / (t_fb * 1e-3) / 1e12)
        if torch is not None:
            for tf32 in (False, True):
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                tfwd, tfb = _torch_conv(torch, x, w, s, p, g)
                row[f"torch_{'tf32' if tf32 else 'fp32'}_fb_ms"] = _sync_ms(tfb, repeat, torch.cuda)
        rows.append(row)
        tfp = row.get("torch_fp32_fb_ms", float("nan"))
        ttf = row.get("torch_tf32_fb_ms", float("nan"))
        print(f"{name:15s} {t_f:8.2f} {t_fb:8.2f} {row['tflops_fb']:8.2f} {tfp:10.2f} {ttf:10.2f} "
              f"{tfp / t_fb:7.2f} {ttf / t_fb:7.2f}")
    for name, shape in OTHER.items():
        fwd, nbytes = _other_case(name, (2, 6, 7, 7) if args.smoke else shape, K, cuda)
        t_f = _sync_ms(fwd, repeat, cuda)
        rows.append(dict(workload=name, fwd_ms=t_f, gbs=nbytes / (t_f * 1e-3) / 1e9))
        print(f"{name:15s} {t_f:8.3f} {'':8s} {rows[-1]['gbs']:8.1f} GB/s")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"device": str(cuda.get_current_device().name) if not args.smoke else "simulator",
                       "corenet": corenet.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
