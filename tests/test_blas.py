"""corenet's GEMM policy: BLAS on one thread, big products split over corenet's own threads."""

import numpy as np
import pytest

import corenet
from corenet import _blas


@pytest.mark.parametrize("shapes", [((37, 19), (19, 23)), ((8, 5), (3, 5, 11)), ((2, 7), (9, 7, 4))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_split_matmul_equals_numpy(monkeypatch, shapes, dtype, transposed):
    monkeypatch.setattr(_blas, "SPLIT_MACS", 1)  # split even these small products
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shapes[0][::-1] if transposed else shapes[0]).astype(dtype)
    a = a.T if transposed else a  # a strided view, as w.T in linear
    b = rng.standard_normal(shapes[1]).astype(dtype)
    want = np.matmul(a, b)
    for threads in (1, 2, 3):
        got = _blas.matmul(a, b, threads=threads)
        # a block of rows may take another BLAS kernel than the whole: rounding may differ
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)
        out = np.full(want.size + 9, -1.0, dtype)
        _blas.matmul(a, b, out=out[:-9].reshape(want.shape), threads=threads)
        np.testing.assert_array_equal(out[:-9].reshape(want.shape), got)  # the same split, the same bits
        assert (out[-9:] == -1.0).all()


def test_blas_runs_on_one_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    corenet.set_num_threads(corenet.get_num_threads())
    blas = [info for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    if not blas:
        pytest.skip("no BLAS library visible to threadpoolctl")
    assert all(info["num_threads"] == 1 for info in blas)
