"""CUDA operator benchmarks: corenet's cuda kernels on device-resident arrays against PyTorch (cuDNN).

The BENCHMARKS.md operator workloads, convolutions scaled to batch 256, float32. Every workload is
first checked against the numba CPU backend on its first two images; then forward and
forward+backward are timed (median of ``--repeat`` runs, ``cuda.synchronize()`` around each, no
host copies inside the timed region) next to PyTorch on the same GPU with TF32 off and on.
Convolutions report TFLOP/s (2 * MACs per pass, 3x for forward+backward) and the ratio to cuDNN
fp32 (TF32 off) for the forward and for forward+backward (torch ms / corenet ms: 1 = as fast); the
ResNet-20 stage shapes run at batch 128. The rest report GB/s of compulsory traffic.

Training (``--only train``): a device-resident step (``model.to("cuda")``, ``train_on_batch`` on a
numpy batch, SGD with momentum) of ResNet-20 (option-B shortcuts) at batch 128 next to the same
network in PyTorch CUDA (bench_train.py's twin, batch copied to the GPU inside its step, the loss
read back), and LeNet-5 images/s. For each: host-to-device and device-to-host copies and device
allocations (requests, new ones) during one step after warm-up.

Every row is written to ``--json`` as soon as it is measured, so a run cut short keeps what it did.

    python benchmarks/bench_cuda.py --json cuda_ops.json          # on a machine with a GPU
    python benchmarks/bench_cuda.py --only train --json train.json
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_cuda.py --smoke  # the script's own check, no GPU
"""

from __future__ import annotations

import argparse
import functools
import os
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
    "r20_stage1": ((128, 16, 32, 32), 16, 3, 1, 1, 1),  # ResNet-20 at batch 128
    "r20_down2": ((128, 16, 32, 32), 32, 3, 2, 1, 1),
    "r20_stage2": ((128, 32, 16, 16), 32, 3, 1, 1, 1),
    "r20_down3": ((128, 32, 16, 16), 64, 3, 2, 1, 1),
    "r20_stage3": ((128, 64, 8, 8), 64, 3, 1, 1, 1),
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


class Recorder:
    """The JSON file, rewritten after every row (a run cut short keeps what it measured)."""

    def __init__(self, path, header):
        self.path, self.payload = path, dict(header, rows=[])

    def add(self, row):
        self.payload["rows"].append(row)
        if self.path:
            import json

            with open(self.path + ".tmp", "w") as f:
                json.dump(self.payload, f, indent=2, default=str)
            os.replace(self.path + ".tmp", self.path)


def _device_info(cuda, smoke):
    if smoke:
        return {"device": "simulator"}
    from numba.cuda.cudadrv import driver, runtime

    dev = cuda.get_current_device()
    return {"device": str(dev.name.decode() if isinstance(dev.name, bytes) else dev.name),
            "compute_capability": list(dev.compute_capability),
            "cuda_driver_version": list(driver.driver.get_version()),
            "cuda_runtime_version": list(runtime.runtime.get_version())}


def run_conv(K, cuda, torch, repeat, smoke, rec):
    from corenet.kernels.numba_cpu import conv as cpu_conv

    print(f"{'workload':15s} {'fwd ms':>8s} {'f+b ms':>8s} {'TFLOP/s':>8s} {'cudnn fwd':>9s} {'cudnn f+b':>9s} "
          f"{'fwd/cudnn':>9s} {'f+b/cudnn':>9s} {'f+b/tf32':>8s}")
    for name, (shape, co, k, s, p, g) in CONV.items():
        if smoke:
            shape = (2, 4, 9, 9)
            co, k, g = (4, min(k, 3), 4 if g > 1 else 1)
        fwd, fb, macs, x, w = _conv_case(shape, co, k, s, p, g, K, cpu_conv)
        t_f, t_fb = _sync_ms(fwd, repeat, cuda), _sync_ms(fb, repeat, cuda)
        row = dict(section="conv", workload=name, shape=list(shape), fwd_ms=t_f, fwdbwd_ms=t_fb,
                   tflops_fb=3 * 2 * macs / (t_fb * 1e-3) / 1e12)
        if torch is not None:
            for tf32 in (False, True):
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                tag = "tf32" if tf32 else "fp32"
                tfwd, tfb = _torch_conv(torch, x, w, s, p, g)
                row[f"torch_{tag}_fwd_ms"] = _sync_ms(tfwd, repeat, torch.cuda)
                row[f"torch_{tag}_fb_ms"] = _sync_ms(tfb, repeat, torch.cuda)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
            row.update(fwd_vs_cudnn_fp32=row["torch_fp32_fwd_ms"] / t_f,
                       fb_vs_cudnn_fp32=row["torch_fp32_fb_ms"] / t_fb, fb_vs_cudnn_tf32=row["torch_tf32_fb_ms"] / t_fb)
        rec.add(row)
        nan = float("nan")
        print(f"{name:15s} {t_f:8.2f} {t_fb:8.2f} {row['tflops_fb']:8.2f} {row.get('torch_fp32_fwd_ms', nan):9.2f} "
              f"{row.get('torch_fp32_fb_ms', nan):9.2f} {row.get('fwd_vs_cudnn_fp32', nan):9.2f} "
              f"{row.get('fb_vs_cudnn_fp32', nan):9.2f} {row.get('fb_vs_cudnn_tf32', nan):8.2f}")


def run_other(K, cuda, repeat, smoke, rec):
    for name, shape in OTHER.items():
        fwd, nbytes = _other_case(name, (2, 6, 7, 7) if smoke else shape, K, cuda)
        t_f = _sync_ms(fwd, repeat, cuda)
        rec.add(dict(section="other", workload=name, fwd_ms=t_f, gbs=nbytes / (t_f * 1e-3) / 1e9))
        print(f"{name:15s} {t_f:8.3f} {'':8s} {rec.payload['rows'][-1]['gbs']:8.1f} GB/s")


TRAIN = {  # name: (builder arguments, input shape, batch); smoke: tiny versions for the simulator
    "resnet20_b128": (("resnet20_cifar", dict(shortcut="B")), (3, 32, 32), 128),
    "lenet5_b128": (("lenet5", {}), (1, 28, 28), 128),
}
TRAIN_SMOKE = {
    "resnet20_b128": (("resnet_cifar", dict(depth=8, input_size=8, width=4, shortcut="B")), (3, 8, 8), 2),
    "lenet5_b128": (("lenet5", dict(input_size=12)), (1, 12, 12), 1),
}


def _count_transfers(cuda, step):
    """``step()`` once, counting host-to-device copies (``to_device``, ``copy_to_device`` from a
    numpy array), device-to-host copies (``copy_to_host``) and device allocations."""
    from corenet.kernels.cuda import _runtime

    cls = type(cuda.to_device(np.zeros(1)))
    h2d, d2h = [], []
    saved = cuda.to_device, cls.copy_to_host, cls.copy_to_device

    def to_device(a, *args, **kwargs):
        h2d.append(list(np.shape(a)))
        return saved[0](a, *args, **kwargs)

    def copy_to_host(self, *args, **kwargs):
        d2h.append(list(self.shape))
        return saved[1](self, *args, **kwargs)

    def copy_to_device(self, a, *args, **kwargs):
        if isinstance(a, np.ndarray):
            h2d.append(list(a.shape))
        return saved[2](self, a, *args, **kwargs)

    cuda.to_device, cls.copy_to_host, cls.copy_to_device = to_device, copy_to_host, copy_to_device
    before = _runtime.alloc_stats()
    try:
        step()
    finally:
        cuda.to_device, cls.copy_to_host, cls.copy_to_device = saved
    after = _runtime.alloc_stats()
    allocs = {k: after[k] - before[k] for k in ("requests", "raw_allocs")} if after else {}
    return dict(h2d=h2d, d2h=d2h, **{f"allocs_{k}": v for k, v in allocs.items()})


def _torch_step(torch, name, x, y, device="cuda"):
    """bench_train.py's PyTorch twin of ``name`` on ``device``: a step that copies the batch there."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_train import build_torch

    torch.set_default_device(device)
    try:
        step = build_torch(name, torch)
    finally:
        torch.set_default_device(None)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    return lambda: step(xt.to(device), yt.to(device))  # the loss comes back as a float: one synchronisation


def run_train(cuda, torch, repeat, smoke, rec):
    import corenet.models as zoo
    from corenet import optim

    print(f"{'network':15s} {'step ms':>8s} {'img/s':>9s} {'torch ms':>9s} {'vs torch':>8s}  "
          "per step: copies, allocations")
    for name, ((builder, kw), shape, n) in (TRAIN_SMOKE if smoke else TRAIN).items():
        model = getattr(zoo, builder)(**kw)
        model.compile(optim.SGD(lr=0.01, momentum=0.9), "cross_entropy")
        model.to("cuda")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, *shape), dtype=np.float32)
        y = rng.integers(0, 10, n)
        step = functools.partial(model.train_on_batch, x, y)  # returns the float loss: synchronised
        for _ in range(1 if smoke else 3):
            loss = step()
        assert np.isfinite(loss), f"{name}: loss {loss}"
        row = dict(section="train", workload=name, batch=n, **_count_transfers(cuda, step))
        row["step_ms"] = _sync_ms(step, repeat, cuda)
        row["images_per_s"] = n / (row["step_ms"] * 1e-3)
        if torch is not None:
            tstep = _torch_step(torch, name, x, y)
            for _ in range(3):
                tstep()
            row["torch_step_ms"] = _sync_ms(tstep, repeat, torch.cuda)
            row["vs_torch"] = row["torch_step_ms"] / row["step_ms"]
        rec.add(row)
        nan = float("nan")
        print(f"{name:15s} {row['step_ms']:8.2f} {row['images_per_s']:9.0f} {row.get('torch_step_ms', nan):9.2f} "
              f"{row.get('vs_torch', nan):8.2f}  h2d {row['h2d']} d2h {row['d2h']} "
              f"allocs {row.get('allocs_requests')} ({row.get('allocs_raw_allocs')} new)")


SECTIONS = ("conv", "other", "train")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, one run: checks the script (simulator)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--json", help="write the results to this path (after every row)")
    args = ap.parse_args(argv)
    reason = kernels.status()["cuda"]
    if reason is not None:
        print(f"cuda backend unavailable: {reason}")
        return 1
    from numba import cuda

    K = kernels.require("cuda")
    torch = None
    try:
        import torch as _torch

        torch = _torch if _torch.cuda.is_available() else None
    except ImportError:
        pass
    repeat = 1 if args.smoke else args.repeat
    header = dict(corenet=corenet.__version__, torch=getattr(torch, "__version__", None),
                  **_device_info(cuda, args.smoke))
    print(header)
    rec = Recorder(args.json, header)
    if "conv" in args.only:
        run_conv(K, cuda, torch, repeat, args.smoke, rec)
    if "other" in args.only:
        run_other(K, cuda, repeat, args.smoke, rec)
    if "train" in args.only:
        run_train(cuda, torch, repeat, args.smoke, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
