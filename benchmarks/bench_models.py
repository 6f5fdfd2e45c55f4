"""Model-zoo benchmark: parameters, MACs, inference time at batch 1 and training-step time.

For every model of ``corenet.models`` at its natural input size (28x28 LeNet-5, 32x32 CIFAR
models, 227x227 for the paper's AlexNet, 224x224 otherwise) it prints the parameter count and MACs
from ``summary()``, the median time of an inference forward at batch 1, and the median time of a
training step (forward, cross-entropy, backward, SGD-momentum update) at ``--batch`` (32) on a
synthetic batch. Before anything is timed the parameter count is checked against the documented
figure and the output shape and finiteness of a forward pass are checked.

Each model is warmed up at batch 2 (kernel compilation, first-touch allocation); big models are
then timed over few repetitions (``--repeat``, fewer automatically above 2 GMACs), so the
training column of the ImageNet models is a one- or two-step measurement on a busy machine.

    python benchmarks/bench_models.py                       # every model, batch 32
    python benchmarks/bench_models.py --models lenet5 resnet20_cifar --batch 64 --json zoo.json
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _harness as H  # noqa: E402

# name: (constructor, kwargs, natural input (C, H, W), documented parameter count)
MODELS = {
    "lenet5": ("lenet5", {}, (1, 28, 28), 61_706),
    "alexnet": ("alexnet", {}, (3, 224, 224), 61_100_840),
    "alexnet_paper": ("alexnet", {"variant": "paper"}, (3, 227, 227), 60_965_224),
    "vgg11": ("vgg11", {}, (3, 224, 224), 132_863_336),
    "vgg13": ("vgg13", {}, (3, 224, 224), 133_047_848),
    "vgg16": ("vgg16", {}, (3, 224, 224), 138_357_544),
    "vgg19": ("vgg19", {}, (3, 224, 224), 143_667_240),
    "googlenet": ("googlenet", {}, (3, 224, 224), 13_004_888),
    "googlenet_paper": ("googlenet", {"variant": "paper"}, (3, 224, 224), 13_378_280),
    "resnet18": ("resnet18", {}, (3, 224, 224), 11_689_512),
    "resnet34": ("resnet34", {}, (3, 224, 224), 21_797_672),
    "resnet50": ("resnet50", {}, (3, 224, 224), 25_557_032),
    "resnet101": ("resnet101", {}, (3, 224, 224), 44_549_160),
    "resnet152": ("resnet152", {}, (3, 224, 224), 60_192_808),
    "resnet20_cifar": ("resnet20_cifar", {"shortcut": "A"}, (3, 32, 32), 269_722),
    "resnet20_cifar_B": ("resnet20_cifar", {"shortcut": "B"}, (3, 32, 32), 272_474),
    "resnet32_cifar": ("resnet32_cifar", {}, (3, 32, 32), 464_154),
    "resnet44_cifar": ("resnet44_cifar", {}, (3, 32, 32), 658_586),
    "resnet56_cifar": ("resnet56_cifar", {}, (3, 32, 32), 853_018),
    "resnet110_cifar": ("resnet110_cifar", {}, (3, 32, 32), 1_727_962),
    "densenet121": ("densenet121", {}, (3, 224, 224), 7_978_856),
    "densenet169": ("densenet169", {}, (3, 224, 224), 14_149_480),
    "densenet201": ("densenet201", {}, (3, 224, 224), 20_013_928),
    "densenet_bc_100_12_cifar": ("densenet_bc_cifar", {"depth": 100, "growth_rate": 12}, (3, 32, 32), 769_162),
    "se_resnet50": ("se_resnet50", {}, (3, 224, 224), 28_088_024),
    "mobilenet_v1": ("mobilenet_v1", {}, (3, 224, 224), 4_231_976),
}


def totals(model) -> tuple[int, int]:
    """``(parameters, MACs per sample)`` as ``summary()`` reports them."""
    text = model.summary(print_fn=None)
    params = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    macs = int(re.search(r"Total MACs: ([\d,]+)", text).group(1).replace(",", ""))
    return params, macs


def check(name, model, params, expected, shape):
    """Verify before timing: the documented parameter count, the output shape, finite logits."""
    if params != expected:
        raise SystemExit(f"bench_models: {name} has {params:,} parameters, documented {expected:,}")
    x = np.random.default_rng(0).standard_normal((2, *shape), dtype=np.float32)
    out = model.forward(x)
    out = out[0] if isinstance(out, list) else out
    classes = 10 if shape[1] <= 32 else 1000
    if out.shape != (2, classes) or not np.isfinite(out).all():
        raise SystemExit(f"bench_models: {name} forward gave shape {out.shape} (finite: {np.isfinite(out).all()}), "
                         f"expected {(2, classes)}")


def bench_one(name, batch, repeat, train=True):
    from corenet import models, optim

    constructor, kw, shape, expected = MODELS[name]
    t0 = time.perf_counter()
    model = models.get_model(constructor, seed=0, **kw)
    build_s = time.perf_counter() - t0
    params, macs = totals(model)
    check(name, model, params, expected, shape)
    reps = repeat if macs < 2e9 else max(1, repeat // 3)
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((1, *shape), dtype=np.float32)
    fwd_ms = H.median_ms(lambda: model.forward(x1), reps + 2)
    row = {"model": name, "input": list(shape), "params": params, "macs": macs, "build_s": build_s,
           "forward_b1_ms": fwd_ms, "batch": batch}
    if train:
        classes = 10 if shape[1] <= 32 else 1000
        n_out = len(model.outputs)
        model.compile(optim.SGD(lr=0.01, momentum=0.9, weight_decay=1e-4), "cross_entropy",
                      loss_weights=[1.0] + [models.AUX_LOSS_WEIGHT] * (n_out - 1) if n_out > 1 else None)
        xb = rng.standard_normal((batch, *shape), dtype=np.float32)
        yb = rng.integers(0, classes, batch)
        model.train_on_batch(xb[:2], yb[:2])  # warm-up: compile and first-touch at a small batch
        step_ms = H.median_ms(lambda: model.train_on_batch(xb, yb), reps, warmup=0)
        row.update(train_step_ms=step_ms, train_images_per_s=batch / (step_ms * 1e-3))
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="NAME",
                   help="subset to run (default: all): " + ", ".join(MODELS))
    p.add_argument("--batch", type=int, default=32, help="training-step batch size (default 32)")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (a third above 2 GMACs, at least 1)")
    p.add_argument("--threads", type=int, default=None, help="corenet.set_num_threads (default: unchanged)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step column")
    p.add_argument("--json", default=None, help="write the rows and the machine info to this file")
    args = p.parse_args(argv)

    import corenet

    if args.threads:
        corenet.set_num_threads(args.threads)
    threads = corenet.get_num_threads()
    print(f"corenet {corenet.__version__}, backend {corenet.get_backend()}, {threads} threads, float32, "
          f"training batch {args.batch}")
    header = (f"{'model':26s} {'input':>11s} {'params':>13s} {'GMACs':>7s} {'fwd b1 ms':>10s} "
              f"{'train ms':>10s} {'img/s':>8s}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in args.models:
        row = bench_one(name, args.batch, args.repeat, train=not args.no_train)
        rows.append(row)
        inp = "x".join(map(str, row["input"]))
        train = (f"{row['train_step_ms']:10.1f} {row['train_images_per_s']:8.1f}" if "train_step_ms" in row
                 else f"{'-':>10s} {'-':>8s}")
        print(f"{name:26s} {inp:>11s} {row['params']:13,d} {row['macs'] / 1e9:7.3f} {row['forward_b1_ms']:10.1f} "
              f"{train}", flush=True)
        gc.collect()
    H.write_json(args.json, {"machine": H.machine_info(threads), "backend": corenet.get_backend(), "rows": rows})


if __name__ == "__main__":
    main()
