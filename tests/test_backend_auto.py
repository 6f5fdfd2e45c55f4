"""The default backend ``auto``: a composition of the named CPU backends' op families."""

import inspect
import subprocess
import sys

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


def test_cpu_backends_share_every_contract_name_and_signature():
    """The kernel contract: every name of a family on one CPU backend exists on the others with the
    same signature, except the compiled direct-convolution primitives (``simd_*``) that only the
    Cython backend has and ``_cpu_conv`` looks up with getattr."""
    names = [b for b in corenet.backends() if b in ("numba", "cython")]
    for family in kernels.FAMILIES:
        modules = {b: getattr(kernels.require(b), family) for b in names}
        union = sorted({n for m in modules.values() for n in m.__all__})
        for name in union:
            present = {b: getattr(m, name) for b, m in modules.items() if hasattr(m, name)}
            if len(present) < len(modules):
                assert name.startswith("simd_"), f"{family}.{name} is missing on {set(modules) - set(present)}"
                continue
            sigs = {b: inspect.signature(fn) for b, fn in present.items()}
            assert len(set(map(str, sigs.values()))) == 1, f"{family}.{name}: {sigs}"
