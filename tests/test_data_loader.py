"""DataLoader: coverage of every sample, drop_last, seeded and resumable order, prefetch equivalence and shutdown."""

import gc
import threading
import time

import numpy as np
import pytest

from corenet.data import Compose, DataLoader, GaussianNoise, RandomHorizontalFlip


def _data(n=50, c=3):
    x = np.arange(n * c * 4 * 4, dtype=np.float32).reshape(n, c, 4, 4)
    return x, np.arange(n)


def _epoch(loader):
    return [(xb.copy(), yb.copy()) for xb, yb in loader]


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_sample_once_per_epoch(shuffle):
    x, y = _data(50)
    loader = DataLoader(x, y, batch_size=8, shuffle=shuffle, seed=0)
    assert len(loader) == 7
    for _ in range(2):
        batches = _epoch(loader)
        seen = np.concatenate([yb for _, yb in batches])
        assert sorted(seen.tolist()) == list(range(50))
        assert [len(yb) for _, yb in batches] == [8] * 6 + [2]
        for xb, yb in batches:
            assert xb.dtype == np.float32 and yb.dtype == np.int64
            np.testing.assert_array_equal(xb, x[yb])  # images stay with their labels
        assert (seen.tolist() == list(range(50))) == (not shuffle)


def test_drop_last():
    x, y = _data(50)
    loader = DataLoader(x, y, batch_size=8, seed=0, drop_last=True)
    assert len(loader) == 6
    batches = _epoch(loader)
    assert len(batches) == 6 and all(len(yb) == 8 for _, yb in batches)
    too_big = DataLoader(x, y, batch_size=64, drop_last=True)
    assert len(too_big) == 0 and _epoch(too_big) == []


def test_seeded_order_repeats_and_epochs_differ():
    x, y = _data(40)
    a, b = DataLoader(x, y, 16, seed=7), DataLoader(x, y, 16, seed=7)
    ea0, ea1 = _epoch(a), _epoch(a)
    eb0 = _epoch(b)
    for (xa, ya), (xb, yb) in zip(ea0, eb0):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(np.concatenate([v for _, v in ea0]), np.concatenate([v for _, v in ea1]))
    c = DataLoader(x, y, 16, seed=8)
    assert not np.array_equal(np.concatenate([v for _, v in _epoch(c)]), np.concatenate([v for _, v in ea0]))
    # a Generator seeds the loader reproducibly too
    g1 = DataLoader(x, y, 16, seed=np.random.default_rng(3))
    g2 = DataLoader(x, y, 16, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(g1.order(5), g2.order(5))


def test_resume_at_epoch_is_exact_including_augmentation():
    x, y = _data(30)
    aug = Compose([RandomHorizontalFlip(0.5), GaussianNoise(0.1)])
    run = DataLoader(x, y, 8, seed=11, transform=aug)
    epochs = [_epoch(run) for _ in range(3)]
    resumed = DataLoader(x, y, 8, seed=11, transform=aug)
    resumed.set_epoch(2)
    for (x1, y1), (x2, y2) in zip(epochs[2], _epoch(resumed)):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)
    assert resumed.epoch == 3


def test_uint8_scaling_and_normalize():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 3, 5, 5), dtype=np.uint8)
    y = rng.integers(0, 3, 10).astype(np.int32)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    (xb, yb), = _epoch(DataLoader(x, y, 10, shuffle=False, normalize=(mean, std)))
    expect = (x / 255.0 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    np.testing.assert_allclose(xb, expect, rtol=1e-5, atol=1e-6)
    assert xb.dtype == np.float32 and yb.dtype == np.int64
    (xr, _), = _epoch(DataLoader(x, y, 10, shuffle=False))
    np.testing.assert_allclose(xr, x / 255.0, rtol=1e-6)
    assert x.dtype == np.uint8 and int(x.max()) > 1  # source untouched


def test_prefetch_gives_the_same_batches():
    x, y = _data(45)
    aug = Compose([RandomHorizontalFlip(), GaussianNoise(0.5)])
    plain = DataLoader(x, y, 8, seed=3, transform=aug)
    pre = DataLoader(x, y, 8, seed=3, transform=aug, prefetch=True)
    for _ in range(2):
        a, b = _epoch(plain), _epoch(pre)
        assert len(a) == len(b) == 6
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "corenet-prefetch"]


def test_prefetch_early_break_does_not_hang():
    x, y = _data(200)
    loader = DataLoader(x, y, 4, seed=0, prefetch=True)
    t0 = time.perf_counter()
    for i, _ in enumerate(loader):
        if i == 2:
            break
    gc.collect()
    it = iter(loader)
    next(it)
    it.close()  # explicit close while the worker is blocked on a full queue
    assert time.perf_counter() - t0 < 5
    deadline = time.perf_counter() + 5
    while _prefetch_threads() and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert _prefetch_threads() == []


def test_prefetch_propagates_exceptions():
    x, y = _data(20)
    calls = []

    def boom(xb, rng):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("transform failed on batch 2")
        return xb

    loader = DataLoader(x, y, 5, seed=0, transform=boom, prefetch=True)
    got = []
    with pytest.raises(RuntimeError, match="batch 2"):
        for xb, _ in loader:
            got.append(xb)
    assert len(got) == 1
    assert _prefetch_threads() == []  # the worker was joined when the error reached the consumer


def test_argument_errors():
    x, y = _data(10)
    with pytest.raises(ValueError, match="same number of samples"):
        DataLoader(x, y[:9], 4)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(x, y, 0)
    with pytest.raises(ValueError, match="normalize"):
        DataLoader(x, y, 4, normalize=(0.5,))
