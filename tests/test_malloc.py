"""corenet keeps freed arrays in the heap: a training step page-faults no memory once warm."""

import os
import resource
import subprocess
import sys

import numpy as np
import pytest

import corenet
from corenet import _malloc, models, optim

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")


def _faults_per_step(model, x, y, steps=4):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps


def test_warm_training_steps_do_not_page_fault():
    if _malloc.status() != "tuned":
        pytest.skip(f"malloc not tuned here: {_malloc.status()}")
    model = models.lenet5(seed=0)
    model.compile(optim.SGD(lr=0.01, momentum=0.9), "cross_entropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    for _ in range(3):
        model.train_on_batch(x, y)
    # untuned glibc maps and unmaps every activation above 128 KiB: ~860 faults per step here
    assert _faults_per_step(model, x, y) < 50


def test_opt_out_leaves_glibc_defaults():
    code = "import corenet, corenet._malloc as m; print(m.status())"
    env = dict(os.environ, CORENET_MALLOC_TUNE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "disabled by CORENET_MALLOC_TUNE=0"
    assert corenet.warmup(verbose=False)["malloc"] == _malloc.status()
