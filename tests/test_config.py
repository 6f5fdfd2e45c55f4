"""Backend registry, thread control and the repository's lint gate."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import corenet
from corenet import kernels

ROOT = Path(__file__).resolve().parents[1]


def test_numba_backend_always_available():
    assert "numba" in corenet.backends()
    assert corenet.backend_status()["numba"] == "available"


def test_unavailable_backend_explains_why():
    status = corenet.backend_status()
    for name, why in status.items():
        if name not in corenet.backends():
            assert why != "available" and len(why) > 10
            with pytest.raises(RuntimeError, match=name):
                corenet.set_backend(name)


def test_unknown_backend_and_bad_types():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        corenet.set_backend("tpu")
    with pytest.raises(TypeError):
        corenet.set_backend(3)


def test_families_are_imported_lazily():
    backend = kernels.require("numba")
    with pytest.raises(AttributeError, match="no op family"):
        backend.nonexistent  # noqa: B018


def test_set_num_threads_governs_numba():
    import numba

    before = corenet.get_num_threads()
    try:
        corenet.set_num_threads(1)
        assert corenet.get_num_threads() == 1 and numba.get_num_threads() == 1
    finally:
        corenet.set_num_threads(before)
    with pytest.raises(ValueError, match="received 0"):
        corenet.set_num_threads(0)
    with pytest.raises(TypeError):
        corenet.set_num_threads(1.5)


def test_environment_variables_choose_backend_and_threads():
    code = "import corenet; print(corenet.get_backend(), corenet.get_num_threads())"
    env = dict(os.environ, CORENET_BACKEND="numba", CORENET_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numba", "1"]


def test_warmup_reports_backend_and_threading_layer():
    report = corenet.warmup(dtypes=(np.float32,))
    assert report["backend"] == corenet.get_backend()
    assert "conv" in report["families"]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (it is in the test extra)")
def test_ruff_clean():
    out = subprocess.run(["ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_threading_layer_defaults_to_workqueue_unless_the_user_chose():
    code = ("import numpy as np, numba, corenet; corenet.F.relu(np.ones((64, 64, 32, 32), np.float32)); "
            "print(numba.threading_layer())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "workqueue"
    env["NUMBA_THREADING_LAYER"] = "omp"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "omp"
