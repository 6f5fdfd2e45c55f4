"""Shared test configuration: hypothesis profiles and the backend parametrisation."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import corenet

# Child processes the tests start (python -c ..., python -m corenet, mpiexec) must import the
# corenet under test, the installed one, as this process does: without this, Python puts the
# working directory first on their path, and from the repository root that is the source tree,
# which a regular (non-editable) install leaves without its compiled extension.
os.environ.setdefault("PYTHONSAFEPATH", "1")

# Kernels compile on first use (seconds), so no per-example deadline. The CI profile keeps the
# suite within its time budget on 2 cores; CORENET_HYPOTHESIS=thorough for a deeper local run.
settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("CORENET_HYPOTHESIS", "ci"))

# "auto" (the default) only composes the families of the named backends (tests/test_config.py
# checks which); the tests that take no ``backend`` fixture run on it.
CPU_BACKENDS = [b for b in corenet.backends() if b not in ("cuda", "auto")]
# CORENET_TEST_CUDA=1 (opt-in: a GPU run, or the simulator's, is slow) adds the cuda backend to the
# parametrisation when it is available here; numpy in, numpy out, so the CPU tests apply unchanged.
TEST_BACKENDS = CPU_BACKENDS + (["cuda"] if os.environ.get("CORENET_TEST_CUDA") == "1"
                                and "cuda" in corenet.backends() else [])


def _on_backend(name):
    """Switch to backend ``name`` for one test (a fixture's body), then back."""
    previous = corenet.get_backend()
    corenet.set_backend(name)
    try:
        yield name
    finally:
        corenet.set_backend(previous)


@pytest.fixture(params=TEST_BACKENDS)
def backend(request):
    """Run the test once per available CPU backend (and cuda when opted in), restoring the previous backend after."""
    yield from _on_backend(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=CPU_BACKENDS)
def cpu_backend(request):
    """Each CPU backend, never cuda (for the thread tests: cuda has no thread count)."""
    yield from _on_backend(request.param)


@pytest.fixture
def two_threads():
    """2 threads for every CPU kernel, whatever the input size; restores the configuration."""
    prev = corenet.config.get_num_threads(), corenet.config.get_parallel_threshold(), corenet.get_backend()
    try:
        corenet.set_num_threads(2)
    except ValueError:
        pytest.skip("fewer than 2 threads allowed here (NUMBA_NUM_THREADS)")
    corenet.config.set_parallel_threshold(0)
    try:
        yield
    finally:
        corenet.set_num_threads(prev[0])
        corenet.config.set_parallel_threshold(prev[1])
        corenet.set_backend(prev[2])
