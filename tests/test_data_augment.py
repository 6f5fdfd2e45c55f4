"""Augmentation properties: identities, shapes and dtypes kept, seeded runs repeat, inputs untouched."""

import numpy as np
import pytest

from corenet.data import augment as A


def _batch(dtype=np.float32, n=6, c=3, h=9, w=11, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 256, (n, c, h, w)).astype(dtype)
    return rng.random((n, c, h, w)).astype(dtype)


class _Fixed:
    """Stand-in generator: every draw returns ``value`` (to force a given angle or factor)."""

    def __init__(self, value):
        self.value = value

    def uniform(self, low, high, size):
        return np.full(size, float(self.value))


ALL = [
    lambda s=None: A.RandomHorizontalFlip(seed=s),
    lambda s=None: A.RandomVerticalFlip(seed=s),
    lambda s=None: A.RandomCrop(2, mode="zero", seed=s),
    lambda s=None: A.RandomCrop(3, mode="reflect", seed=s),
    lambda s=None: A.RandomShift(2, mode="edge", seed=s),
    lambda s=None: A.RandomRotation(15, interpolation="bilinear", seed=s),
    lambda s=None: A.RandomRotation(15, interpolation="nearest", fill=0.5, seed=s),
    lambda s=None: A.RandomScale((0.8, 1.2), seed=s),
    lambda s=None: A.RandomAffine(10, scale=(0.9, 1.1), translate=(0.1, 0.1), seed=s),
    lambda s=None: A.ColorJitter(0.4, 0.4, 0.4, seed=s),
    lambda s=None: A.Lighting(0.1, seed=s),
    lambda s=None: A.GaussianNoise(0.1, seed=s),
    lambda s=None: A.Compose([A.RandomHorizontalFlip(), A.RandomCrop(2), A.ColorJitter(0.2, 0.2)], seed=s),
]


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_shape_dtype_kept_seeded_repeat_input_untouched(make, dtype):
    x = _batch(dtype)
    before = x.copy()
    t = make()
    out1 = t(x, np.random.default_rng(5))
    out2 = t(x, np.random.default_rng(5))
    assert out1.shape == x.shape and out1.dtype == x.dtype
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(x, before)
    # the generator given at construction is used when none is passed
    np.testing.assert_array_equal(make(np.random.default_rng(5))(x), out1)


def test_construction_seed_repeats():
    x = _batch()
    a = A.Compose([A.RandomRotation(20), A.GaussianNoise(0.1)], seed=42)(x)
    b = A.Compose([A.RandomRotation(20), A.GaussianNoise(0.1)], seed=42)(x)
    c = A.Compose([A.RandomRotation(20), A.GaussianNoise(0.1)], seed=43)(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("cls", [A.RandomHorizontalFlip, A.RandomVerticalFlip])
def test_flip_twice_is_identity(cls):
    x = _batch()
    once = cls(p=1.0)(x, np.random.default_rng(0))
    axis = -1 if cls is A.RandomHorizontalFlip else -2
    np.testing.assert_array_equal(once, np.flip(x, axis))
    np.testing.assert_array_equal(cls(p=1.0)(once, np.random.default_rng(1)), x)
    np.testing.assert_array_equal(cls(p=0.0)(x, np.random.default_rng(0)), x)
    flipped = cls(p=0.5)(_batch(n=400), np.random.default_rng(0))
    frac = np.mean([not np.array_equal(a, b) for a, b in zip(flipped, _batch(n=400))])
    assert 0.4 < frac < 0.6


def test_crop_is_a_shift_within_padding():
    x = _batch(n=20) + 1.0  # strictly positive, so zero padding is recognisable
    out = A.RandomCrop(2)(x, np.random.default_rng(0))
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 9, dx:dx + 11] for dy in range(5) for dx in range(5)]
        assert any(np.array_equal(out[i], w) for w in windows)
    np.testing.assert_array_equal(A.RandomCrop(0)(x, np.random.default_rng(0)), x)
    assert (A.RandomCrop(2, mode="reflect")(x, np.random.default_rng(0)) > 0).all()
    with pytest.raises(ValueError, match="mode"):
        A.RandomCrop(2, mode="wrap")


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_rotation_by_zero_and_scale_one_are_identity(interpolation):
    x = _batch(np.float64)
    np.testing.assert_array_equal(A.RandomRotation(0, interpolation=interpolation)(x, np.random.default_rng(0)), x)
    np.testing.assert_array_equal(A.RandomScale((1, 1), interpolation=interpolation)(x, np.random.default_rng(0)), x)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_rotation_by_90_matches_rot90(interpolation):
    x = _batch(h=7, w=7)
    out = A.RandomRotation(90, interpolation=interpolation).apply(x, _Fixed(90))
    np.testing.assert_allclose(out, np.rot90(x, 1, axes=(2, 3)), atol=1e-5)  # counter-clockwise as displayed
    out = A.RandomRotation(90, interpolation=interpolation).apply(x, _Fixed(-90))
    np.testing.assert_allclose(out, np.rot90(x, -1, axes=(2, 3)), atol=1e-5)


def test_rotation_fill_and_bilinear_smoothness():
    x = np.ones((1, 1, 8, 8), np.float32)
    out = A.RandomRotation(45, fill=0.0).apply(x, _Fixed(45))
    assert out[0, 0, 0, 0] == 0.0 and out[0, 0, 4, 4] == 1.0  # corners come from outside
    assert ((out >= 0) & (out <= 1 + 1e-6)).all()
    out = A.RandomRotation(45, interpolation="nearest", fill=-1.0).apply(x, _Fixed(45))
    assert set(np.unique(out)) == {-1.0, 1.0}


def test_scale_zooms_about_the_centre():
    x = np.zeros((1, 1, 9, 9), np.float32)
    x[0, 0, 4, 6] = 1.0  # two pixels right of the centre
    out = A.RandomScale((2, 2), interpolation="nearest").apply(x, _Fixed(2))
    assert out[0, 0, 4, 8] == 1.0 and out[0, 0, 4, 6] == 0.0


def test_color_jitter():
    x = _batch()
    np.testing.assert_array_equal(A.ColorJitter()(x, np.random.default_rng(0)), x)
    out = A.ColorJitter(brightness=0.5)(x, np.random.default_rng(0))
    ratio = out / x
    np.testing.assert_allclose(ratio, ratio[:, :1, :1, :1] * np.ones_like(ratio), rtol=1e-5)  # one factor per image
    grey = np.repeat(x[:, :1], 3, axis=1)  # R = G = B: saturation changes nothing
    np.testing.assert_allclose(A.ColorJitter(saturation=0.8)(grey, np.random.default_rng(0)), grey, atol=1e-6)
    out = A.ColorJitter(contrast=0.9, clip=(0, 1))(x * 2, np.random.default_rng(0))
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="C=3"):
        A.ColorJitter(saturation=0.2)(_batch(c=1), np.random.default_rng(0))


def test_lighting():
    x = _batch()
    np.testing.assert_array_equal(A.Lighting(0.0)(x, np.random.default_rng(0)), x)
    delta = A.Lighting(0.1)(x, np.random.default_rng(0)) - x
    np.testing.assert_allclose(delta, delta[:, :, :1, :1] * np.ones_like(delta), atol=1e-6)  # per image, per channel
    fitted = A.Lighting.from_data(_batch(np.uint8, n=50))
    np.testing.assert_allclose(fitted.eigvec.T @ fitted.eigvec, np.eye(3), atol=1e-10)
    assert np.all(np.diff(fitted.eigval) <= 0)
    with pytest.raises(ValueError, match="C=3"):
        A.Lighting()(_batch(c=1), np.random.default_rng(0))


def test_gaussian_noise_and_normalize():
    x = np.zeros((50, 2, 20, 20), np.float32)
    noisy = A.GaussianNoise(0.2)(x, np.random.default_rng(0))
    assert abs(float(noisy.std()) - 0.2) < 0.01 and abs(float(noisy.mean())) < 0.01
    np.testing.assert_array_equal(A.GaussianNoise(0.0)(x, np.random.default_rng(0)), x)
    y = _batch(np.float64, c=2)
    out = A.Normalize((0.5, 0.25), (0.5, 2.0))(y)
    np.testing.assert_allclose(out[:, 0], (y[:, 0] - 0.5) / 0.5)
    np.testing.assert_allclose(out[:, 1], (y[:, 1] - 0.25) / 2.0)
    assert out.dtype == np.float64
    with pytest.raises(ValueError, match="floating"):
        A.Normalize(0.5, 0.5)(_batch(np.uint8))
    with pytest.raises(ValueError, match="channels"):
        A.Normalize((0.5, 0.5, 0.5), (1, 1, 1))(y)


def test_uint8_results_stay_in_range():
    x = _batch(np.uint8)
    out = A.Compose([A.ColorJitter(1.0, 1.0, 1.0), A.GaussianNoise(50.0), A.RandomRotation(30)])(
        x, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.min() >= 0 and out.max() <= 255


def test_rejects_non_batches():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        A.RandomHorizontalFlip()(np.zeros((3, 4, 4)), np.random.default_rng(0))
