"""The default backend ``auto``: a composition of the named CPU backends' op families."""

import functools
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import corenet
from corenet import kernels
from corenet.kernels import auto


def test_auto_is_the_default_and_always_available():
    code = "import corenet; print(corenet.get_backend())"
    env_free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={k: v for k, v in __import__("os").environ.items() if k != "CORENET_BACKEND"})
    assert env_free.stdout.strip() == "auto"
    assert corenet.backend_status()["auto"] == "available"
    assert "auto" in corenet.backends()


def test_every_family_is_a_named_backends_module_with_the_same_names():
    sources = auto.sources()
    assert set(sources) == set(kernels.FAMILIES)
    backend = kernels.require("auto")
    for family, name in sources.items():
        chosen = getattr(kernels.require(name), family)
        mine = getattr(backend, family)
        assert mine.__all__ == chosen.__all__
        for fn in mine.__all__:
            assert getattr(mine, fn) is getattr(chosen, fn)
            numba_fn = getattr(getattr(kernels.require("numba"), family), fn, None)
            if numba_fn is not None:  # the contract names; a backend may add its own primitives
                assert inspect.signature(getattr(mine, fn)) == inspect.signature(numba_fn)


def test_convolution_comes_from_the_compiled_direct_kernels_when_built():
    expected = "cython" if "cython" in corenet.backends() else "numba"
    assert auto.sources()["conv"] == expected


def test_auto_matches_numba_on_a_small_network():
    from corenet import models

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    outs = {}
    previous = corenet.get_backend()
    try:
        for name in ("numba", "auto"):
            corenet.set_backend(name)
            outs[name] = models.lenet5(seed=0).predict(x)
    finally:
        corenet.set_backend(previous)
    np.testing.assert_allclose(outs["auto"], outs["numba"], rtol=1e-4, atol=1e-5)


# Run in a fresh interpreter with numba's CUDA simulator on (it must be chosen before numba.cuda is first
# imported), so the cuda backend's modules import without a GPU: every backend present, every family it
# has, every exported name with its signature, as JSON.
_SIGNATURES = """
import importlib, inspect, json
from corenet import kernels
out = {}
for backend, reason in kernels.status().items():
    if backend == "auto" or reason is not None:
        continue
    for family in kernels.FAMILIES:
        try:
            module = importlib.import_module(f"corenet.kernels.{kernels._PACKAGES[backend]}.{family}")
        except ImportError:
            continue  # a family the backend does not have (cuda: fused)
        out.setdefault(family, {})[backend] = {n: str(inspect.signature(getattr(module, n))) for n in module.__all__}
print(json.dumps(out))
"""


@functools.lru_cache(maxsize=1)
def _signatures():
    # the child imports the corenet this process imported (the source tree or the installed one)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(Path(corenet.__file__).resolve().parent.parent))
    proc = subprocess.run([sys.executable, "-c", _SIGNATURES], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_backend_shares_every_kernel_name_with_one_signature():
    """The kernel contract across every backend present (cuda under numba's simulator): a name that
    two backends export has one signature on both (parameter names, order and defaults). The CPU
    backends have the same names, except the compiled direct-convolution primitives (``simd_*``) that
    only the Cython backend has and ``_cpu_conv`` looks up with getattr; the cuda backend may lack the
    CPU convolution's primitives (im2col, direct loops) and add device helpers of its own."""
    sigs = _signatures()
    backends = {b for fam in sigs.values() for b in fam}
    assert {"numba", "cuda"} <= backends, f"expected the numba and (simulated) cuda backends, found {backends}"
    if "cython" in corenet.backends():
        assert "cython" in backends
    mismatched = []
    for family, per_backend in sigs.items():
        cpu = {b: names for b, names in per_backend.items() if b != "cuda"}
        for name in sorted({n for names in cpu.values() for n in names}):
            missing = [b for b, names in cpu.items() if name not in names]
            assert not missing or name.startswith("simd_"), f"{family}.{name} is missing on {missing}"
        for name in sorted({n for names in per_backend.values() for n in names}):
            found = {b: names[name] for b, names in per_backend.items() if name in names}
            if len(set(found.values())) > 1:
                mismatched.append(f"{family}.{name}: {found}")
    assert not mismatched, "one signature per kernel name:\n" + "\n".join(mismatched)


def test_batch_norm_kernels_are_one_contract_on_every_backend():
    """functional/norm.py runs one path for every array kind: the (C,) steps exist everywhere."""
    sigs = _signatures()["norm"]
    for backend, names in sigs.items():
        for name in ("bn_stats", "bn_prepare", "bn_affine", "bn_backward_reduce", "bn_backward_coeffs",
                     "bn_backward_gx", "bn_scale_gx"):
            assert name in names, f"norm.{name} is missing on {backend}"
