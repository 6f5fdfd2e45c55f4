"""The cuda backend's memory and launch edges: the caching allocator, empty batches, strided device
views, the implicit GEMM's int32 offsets, grid limits and the block-parallel reductions (issue 18,
part 1). How these run without
a GPU (numba's CUDA simulator, in a child pytest): see tests/cuda_sim.py.
"""

import gc

import numpy as np
import pytest
from cuda_sim import DTYPES, IN_SIM, close, needs_cuda, needs_gpu, run_under_simulator

from corenet.kernels.cuda import _alloc

if not IN_SIM:

    def test_simulator_run():
        """Every kernel test of this file on numba's CUDA simulator, in a fresh interpreter."""
        run_under_simulator(__file__)


# ------------------------------------------------------------------------- the block cache itself


def test_size_classes():
    assert [_alloc.size_class(n) for n in (0, 1, 512, 513, (1 << 20) - 1)] == [512, 512, 512, 1024, 1 << 20]
    assert _alloc.size_class(1 << 20) == 1 << 20
    assert _alloc.size_class((1 << 20) + 1) == (1 << 20) + (128 << 10)


def test_block_cache_reuses_a_given_back_block_of_its_size_class():
    made = []

    def raw(size):
        made.append(size)
        return object()

    cache = _alloc.BlockCache(raw)
    s1, b1 = cache.take(1000)
    s2, b2 = cache.take(1000)
    assert s1 == s2 == 1024 and b1 is not b2 and made == [1024, 1024]
    cache.give(s1, b1)
    assert cache.stats() == dict(requests=2, raw_allocs=2, in_use=1024, cached=1024)
    s3, b3 = cache.take(600)  # the same size class: the block just given back
    assert b3 is b1 and made == [1024, 1024]
    _, b4 = cache.take(5000)  # another class: a new block
    assert b4 is not b2 and made == [1024, 1024, 5120]
    cache.give(s2, b2)
    cache.give(s3, b3)
    assert cache.clear() == 2048
    assert cache.stats() == dict(requests=4, raw_allocs=3, in_use=5120, cached=0)
    _, b5 = cache.take(1024)
    assert b5 not in (b1, b2) and cache.stats()["raw_allocs"] == 4


def _numba_driver():
    try:
        from numba.cuda.cudadrv import driver
    except Exception:  # noqa: BLE001 - numba-cuda missing or broken
        return None
    return driver


@pytest.mark.skipif(IN_SIM, reason="numba's real pointer classes: runs in the parent process, not the simulator")
@pytest.mark.skipif(_numba_driver() is None, reason="numba.cuda's driver module does not import here")
def test_gpu_manager_leases_blocks_through_numbas_pointer_reference_counts():
    """The EMM plugin's glue, without a GPU: numba's real pointer classes over a stand-in raw
    allocator. A block returns to the cache only when the last (owned) view of its pointer is
    gone, and the next request of its size class gets the same device address."""
    import types

    driver = _numba_driver()
    raw, kept = [], []

    class RawManager:  # stands in for numba's manager: cuMemAlloc, then a pointer
        def __init__(self, context):
            self.context = context
            self.deallocations = types.SimpleNamespace(clear=lambda: raw.append("flushed"))

        def memalloc(self, size):
            if raw.count("oom") == 1 and raw[-1] == "oom":
                raise driver.CudaAPIError(2, "out of memory")
            raw.append(size)
            mem = driver.AutoFreePointer(self.context, driver.drvapi.cu_device_ptr(4096 * len(raw)), size)
            kept.append(mem)  # numba's manager keeps its pointers in self.allocations alike
            return mem.own()

        def reset(self):
            pass

    class Context:
        pass

    fake = types.SimpleNamespace(NumbaCUDAMemoryManager=RawManager, AutoFreePointer=driver.AutoFreePointer,
                                 CudaAPIError=driver.CudaAPIError)
    ctx = Context()
    mm = _alloc.make_manager_class(fake)(context=ctx)
    p = mm.memalloc(1000)
    addr = p.device_pointer_value
    view = p.view(100, 600)  # what a device-array slice holds
    del p
    gc.collect()
    assert mm.cache.stats()["cached"] == 0  # the view keeps the lease
    q = mm.memalloc(900)
    assert q.device_pointer_value != addr and raw == [1024, 1024]
    del view
    gc.collect()
    assert mm.cache.stats() == dict(requests=2, raw_allocs=2, in_use=1024, cached=1024)
    r = mm.memalloc(1024)
    assert r.device_pointer_value == addr and raw == [1024, 1024]
    del q, r
    gc.collect()
    raw.append("oom")  # the next raw allocation fails once: the cache is emptied and it is retried
    s = mm.memalloc(10_000)
    assert raw[-3:] == ["oom", "flushed", 10240] and mm.cache.stats()["cached"] == 0
    del s


# ------------------------------------------------------------------------- on the device (or simulator)


def _address(a):
    """Where a device array's memory starts (a real pointer on a GPU, the host buffer in the simulator)."""
    return a._ary.ctypes.data if IN_SIM else a.device_ctypes_pointer.value


@needs_cuda
def test_freed_memory_is_reused_and_a_live_view_keeps_its_block():
    from corenet.kernels.cuda import _runtime

    if not _runtime.alloc_stats():
        pytest.skip("CORENET_CUDA_ALLOCATOR=numba: numba's own manager, no cache to test")
    a = _runtime.empty((6, 50), np.float32)
    where = _address(a)
    view = a.reshape(300)
    del a
    gc.collect()
    b = _runtime.empty((300,), np.float32)  # same size class, but the view still uses the first block
    assert _address(b) != where
    view.copy_to_device(np.arange(300, dtype=np.float32))
    b.copy_to_device(np.zeros(300, np.float32))
    np.testing.assert_array_equal(view.copy_to_host(), np.arange(300))  # not overwritten through b
    before = _runtime.alloc_stats()
    del view
    gc.collect()
    c = _runtime.empty((10, 30), np.float32)
    after = _runtime.alloc_stats()
    assert _address(c) == where
    assert after["requests"] == before["requests"] + 1 and after["raw_allocs"] == before["raw_allocs"]


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("groups,cout", [(1, 4), (3, 3)], ids=["gemm", "direct"])
def test_empty_batch(dt, groups, cout):
    from corenet.kernels.cuda import _reduce, conv, norm
    from corenet.kernels.cuda._runtime import cuda

    x = np.zeros((0, 3, 5, 4), dt)
    w = np.ones((cout, 3 // groups, 3, 3), dt)
    b = np.ones(cout, dt)
    geo = ((1, 1), (1, 1, 1, 1), (1, 1), groups)
    y = conv.conv2d_forward(x, w, b, *geo)
    assert y.shape == (0, cout, 5, 4) and y.dtype == dt
    gx, gw, gb = conv.conv2d_backward(x, w, y, *geo, True, True, True)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gw, np.zeros_like(w))
    np.testing.assert_array_equal(gb, np.zeros(cout, dt))
    x3 = np.zeros((0, 3, 4), dt)
    mean, var = norm.bn_stats(x3)  # nothing to read: NaN statistics, no element 0
    assert mean.shape == var.shape == (3,) and np.isnan(mean).all() and np.isnan(var).all()
    sg, sgx = norm.bn_backward_reduce(x3, x3, np.zeros(3))
    np.testing.assert_array_equal(sg, np.zeros(3))
    np.testing.assert_array_equal(sgx, np.zeros(3))
    s1, _ = _reduce.channel_sums(cuda.to_device(np.zeros((2, 3, 0), dt)), None, None, _reduce.SUM)
    np.testing.assert_array_equal(s1.copy_to_host(), np.zeros(3))


@needs_cuda
def test_strided_device_views_are_refused_and_contiguous_outputs_filled_in_place():
    from corenet.kernels.cuda import norm, ops
    from corenet.kernels.cuda._runtime import cuda

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8))
    mean, scale, shift = np.zeros(3), np.ones(3) * 2, np.ones(3)
    dx = cuda.to_device(x)
    with pytest.raises(ValueError, match=r"C-contiguous, received a view of shape \(2, 3, 4\)"):
        norm.bn_affine(dx[:, :, ::2], mean, scale, shift, None)
    out = cuda.to_device(np.zeros((2, 3, 16)))
    with pytest.raises(ValueError, match="C-contiguous"):  # an OUT view: its update would be lost
        norm.bn_affine(dx, mean, scale, shift, out[:, :, :8])
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.accumulate(cuda.to_device(np.zeros((4, 4)))[:, 1:3], np.ones((4, 2)))
    y = cuda.to_device(np.zeros_like(x))
    assert norm.bn_affine(dx, mean, scale, shift, y) is y
    close(y.copy_to_host(), x * 2 + 1, np.float64)
    part = cuda.to_device(np.zeros((4, 2, 8)))[1:3]  # a leading-axis slice is contiguous: accepted
    ops.accumulate(part, np.ones((2, 2, 8)))
    np.testing.assert_array_equal(part.copy_to_host(), np.ones((2, 2, 8)))


@needs_cuda
def test_conv_refuses_offsets_past_int32_before_copying():
    from corenet.kernels.cuda import conv

    # 256 channels at 2900 x 2900 is 2**31.003 elements per image: a zero-stride stand-in, no allocation
    x = np.broadcast_to(np.float32(0), (1, 256, 2900, 2900))
    w = np.broadcast_to(np.float32(0), (8, 256, 3, 3))
    geo = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match=r"conv2d_forward \(cuda\): one image's group of the input spans "
                                         r"2152960000 elements.*2\*\*31 - 1"):
        conv.conv2d_forward(x, w, None, *geo)
    gy = np.broadcast_to(np.float32(0), (1, 8, 2900, 2900))
    wide = np.broadcast_to(np.float32(0), (256, 8, 3, 3))  # grad-input: 256 output channels per group
    with pytest.raises(ValueError, match="conv2d_backward \\(cuda\\): .* upstream gradient spans 2152960000"):
        conv.conv2d_backward(gy, wide, np.broadcast_to(np.float32(0), (1, 256, 2900, 2900)), *geo,
                             True, False, False)
    # at the limit exactly: accepted by the check (2**31 - 1 = 7 * 151 * 2031671 elements)
    conv._check_table_range("t", (1, 7, 151, 2031671), (8, 7, 1, 1), (1, 1), 1)
    # grouped: the span is per group, so 4 groups of 64 channels fit
    conv._check_table_range("t", (1, 256, 2900, 2900), (256, 64, 3, 3), (2900, 2900), 4)


@needs_cuda
def test_channel_reduction_grid_keeps_channels_on_x():
    from corenet.kernels.cuda import _reduce
    from corenet.kernels.cuda._runtime import MAX_BLOCKS

    for C, M in ((70000, 128), (1, 10**9), (3, 1)):
        (gx, gy), chunk = _reduce.partials_grid(C, M)
        assert gx == C and 1 <= gy <= min(MAX_BLOCKS, 65535) and gy * chunk >= M


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_block_reductions_over_long_rows_and_many_planes(dt):
    """Rows longer than a block (several strides per thread) and more planes or rows than the grid
    (block-stride loops): sum_mul_lanes, softmax cross-entropy and softmax over rows of logits
    against float64 numpy, same bits on a second run."""
    from corenet.kernels.cuda import act, ops, train

    rng = np.random.default_rng(7)
    a, b = (rng.standard_normal((3, 3, 37)).astype(dt) for _ in range(2))
    got = ops.sum_mul_lanes(a, b)
    assert got.dtype == dt and got.shape == (3, 3)
    close(got, (a.astype(np.float64) * b).sum(axis=2), dt)
    np.testing.assert_array_equal(ops.sum_mul_lanes(a, b), got)
    z = rng.standard_normal((9, 37)).astype(dt) * 3
    z[4] += 500  # large logits: the block max keeps exp in range
    labels = rng.integers(0, 37, 9)
    ls = 0.1
    z64 = z.astype(np.float64)
    logp = z64 - z64.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    q = np.full(z.shape, ls / 37)
    q[np.arange(9), labels] += 1 - ls
    loss, grad = train.softmax_cross_entropy(z, labels, ls, "mean")
    assert loss == pytest.approx(-(q * logp).sum() / 9, rel=1e-6)
    close(grad, (np.exp(logp) - q) / 9, dt)
    again = train.softmax_cross_entropy(z, labels, ls, "mean")
    assert again[0] == loss and np.array_equal(again[1], grad)
    sm = np.exp(logp)  # softmax over rows of logits, (P, K, 1): one block per row
    gz = rng.standard_normal(z.shape).astype(dt)
    g64 = gz.astype(np.float64)
    for log in (False, True):
        y = act.softmax_forward(z[:, :, None], log, np.empty((9, 37, 1), dt))
        close(y[:, :, 0], logp if log else sm, dt)
        want = g64 - sm * g64.sum(1, keepdims=True) if log else sm * (g64 - (g64 * sm).sum(1, keepdims=True))
        gx = act.softmax_backward(gz[:, :, None], y, log, np.empty((9, 37, 1), dt))
        close(gx[:, :, 0], want, dt)


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_global_pooling_block_per_plane_equals_the_cpu(dt):
    """Whole-plane windows run one block per plane: the first extremum and the first NaN win as in
    the CPU kernels (value and argmax equal), averages and sums agree to rounding."""
    from corenet.kernels.cuda import pool
    from corenet.kernels.numba_cpu import pool as cpu

    rng = np.random.default_rng(8)
    x = rng.integers(0, 3, (3, 3, 5, 7)).astype(dt)  # ties everywhere; planes longer than a block
    x[0, 1, 3, 2] = x[0, 1, 4, 6] = np.nan  # the first NaN wins
    x[2, 2] = -np.inf
    geo = (5, 7, 1, 1, 0, 0, 1, 1)  # kh, kw, sh, sw, pt, pl, dh, dw
    for find_min in (False, True):
        y, idx = np.empty((3, 3, 1, 1), dt), np.empty((3, 3, 1, 1), np.int32)
        y_cpu, idx_cpu = np.empty_like(y), np.empty_like(idx)
        pool.extreme_pool_forward(x, y, idx, *geo, find_min)
        cpu.extreme_pool_forward(x, y_cpu, idx_cpu, *geo, find_min)
        np.testing.assert_array_equal(y, y_cpu)
        np.testing.assert_array_equal(idx, idx_cpu)
    assert idx[0, 1, 0, 0] == 3 * 7 + 2
    for divisor in (0.0, 1.0, 4.0):  # average, sum, a fixed divisor
        y, y_cpu = np.empty((3, 3, 1, 1), dt), np.empty((3, 3, 1, 1), dt)
        args = (5, 7, 1, 1, 0, 0, 0, 0, 1, 1, True, divisor)
        pool.avg_pool_forward(x, y, *args)
        cpu.avg_pool_forward(x, y_cpu, *args)
        close(y, y_cpu, dt)


@needs_gpu
def test_gpu_linear_bias_gradient_with_more_than_65535_outputs():
    from corenet.kernels.cuda import ops

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2)).astype(np.float32)
    w = rng.standard_normal((70000, 2)).astype(np.float32)
    gy = rng.standard_normal((3, 70000)).astype(np.float32)
    _, _, gb = ops.linear_backward(x, w, gy, False, False, True)
    np.testing.assert_allclose(gb, gy.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
