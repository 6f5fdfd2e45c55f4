"""Readers: MNIST and Fashion-MNIST IDX on the shared files and corrupt copies, CIFAR on synthetic files."""

import gzip
import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from corenet.data import (
    load_bundled,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_kmnist,
    load_mnist,
    read_idx,
    write_idx,
)
from corenet.data.bundled import BUNDLE_DIR

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED}")
REPO = Path(__file__).resolve().parents[1]


def md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- IDX
@needs_shared
def test_mnist_test_split_is_the_official_file():
    assert md5(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz") == "9fb629c4189551a2d022fa330f9573f3"
    assert md5(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz") == "ec29112dd5afa0611ce80d1b7f02629c"
    x, y = load_mnist(SHARED, split="test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int64
    assert y.min() == 0 and y.max() == 9 and len(np.unique(y)) == 10
    assert y[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits


@needs_shared
def test_mnist_and_fashion_train_subsets():
    x, y = load_mnist(SHARED / "mnist", split="train")  # root may be the folder itself
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,) and y[:3].tolist() == [5, 0, 4]
    xf, yf = load_fashion_mnist(SHARED)  # finds SHARED/fashion-mnist/
    assert xf.shape == (8226, 1, 28, 28) and xf.dtype == np.uint8
    assert yf.dtype == np.int64 and 0 <= yf.min() and yf.max() <= 9


@needs_shared
def test_normalize_options():
    x, _ = load_mnist(SHARED, split="test", normalize=True)
    assert x.dtype == np.float32 and x.shape == (10000, 1, 28, 28)
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1.0) < 0.02  # constants ~ test-set stats
    raw, _ = load_mnist(SHARED, split="test")
    x2, _ = load_mnist(SHARED, split="test", normalize=((0.5,), (0.25,)))
    np.testing.assert_allclose(x2, (raw / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="normalize"):
        load_mnist(SHARED, split="test", normalize="yes")
    with pytest.raises(ValueError, match="split"):
        load_mnist(SHARED, split="valid")


@needs_shared
def test_unpacked_files_in_torchvision_layout(tmp_path):
    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((SHARED / "mnist" / f"{name}.gz").read_bytes()))
    x, y = load_kmnist(tmp_path, split="test")  # any IDX pair will do for the layout check
    xr, yr = load_mnist(SHARED, split="test")
    np.testing.assert_array_equal(x, xr)
    np.testing.assert_array_equal(y, yr)
    # KMNIST has no published constants here: normalize=True uses the training split's statistics
    shutil.copy(raw / "t10k-images-idx3-ubyte", raw / "train-images-idx3-ubyte")
    shutil.copy(raw / "t10k-labels-idx1-ubyte", raw / "train-labels-idx1-ubyte")
    xn, _ = load_kmnist(tmp_path, split="test", normalize=True)
    assert abs(float(xn.mean())) < 1e-3 and abs(float(xn.std()) - 1) < 1e-3


def test_missing_files_name_the_paths_searched(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_mnist(tmp_path / "nothing", split="test")
    assert str(tmp_path / "nothing" / "t10k-images-idx3-ubyte.gz") in str(e.value)
    assert "download=True" in str(e.value)


def _idx_pair(tmp_path, n_images=20, n_labels=20):
    rng = np.random.default_rng(0)
    img = write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8))
    lab = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_labels, dtype=np.uint8))
    return img, lab


def test_count_mismatch_names_both_files(tmp_path):
    img, lab = _idx_pair(tmp_path, 20, 19)
    with pytest.raises(ValueError, match="count mismatch") as e:
        load_mnist(tmp_path)
    assert str(img) in str(e.value) and str(lab) in str(e.value) and "20 images" in str(e.value)


def test_wrong_magic_names_the_file(tmp_path):
    img, lab = _idx_pair(tmp_path)
    shutil.copy(lab, img)  # a labels file where the images belong: magic 2049
    with pytest.raises(ValueError, match="wrong magic number 2049") as e:
        load_mnist(tmp_path)
    assert str(img) in str(e.value)
    img.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as e:
        load_mnist(tmp_path)
    assert str(img) in str(e.value)


def test_truncated_files_name_the_file(tmp_path):
    img, lab = _idx_pair(tmp_path)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])  # truncated gzip stream
    with pytest.raises(ValueError, match="truncated") as e:
        load_mnist(tmp_path)
    assert str(img) in str(e.value)
    raw = tmp_path / "train-images-idx3-ubyte"  # truncated raw data behind a valid header
    img.unlink()
    write_idx(raw, np.zeros((20, 28, 28), np.uint8))
    raw.write_bytes(raw.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"truncated: header promises shape \(20, 28, 28\)") as e:
        load_mnist(tmp_path)
    assert str(raw) in str(e.value)
    raw.write_bytes(raw.read_bytes()[:10])
    with pytest.raises(ValueError, match="truncated header"):
        read_idx(raw)


def test_shape_product_overflow_names_the_file(tmp_path):
    """4 x 65536 wraps to 0 in int64: the header alone then looked like a complete, empty array."""
    path = tmp_path / "huge-idx4-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + (65536).to_bytes(4, "big") * 4)
    with pytest.raises(ValueError, match="huge-idx4-ubyte.*shape \\(65536, 65536, 65536, 65536\\)") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_gzip_bomb_is_decompressed_only_as_far_as_the_header_promises(tmp_path, monkeypatch):
    path = tmp_path / "bomb-labels-idx1-ubyte.gz"
    header = bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big")  # promises 10 label bytes
    with gzip.GzipFile(filename="", mode="wb", fileobj=open(path, "wb"), mtime=0) as g:
        g.write(header + bytes(10))
        for _ in range(64):  # then 64 MiB of zeros (64 KiB compressed)
            g.write(bytes(1 << 20))
    decompressed = []

    class Counting(gzip.GzipFile):
        def read(self, size=-1):
            block = super().read(size)
            decompressed.append(len(block))
            return block

    monkeypatch.setattr(gzip, "GzipFile", Counting)
    with pytest.raises(ValueError, match="trailing bytes") as e:
        read_idx(path, 2049)
    assert str(path) in str(e.value)
    assert sum(decompressed) <= len(header) + 10 + 1


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [True, False])
def test_write_read_roundtrip(tmp_path, dtype, compress):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = write_idx(tmp_path / "a.idx", a, compress=compress)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------- CIFAR
def _cifar_arrays(n, n_classes, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, n_classes, n)


def _write_pickle(path, data, labels, old_numpy=True):
    """A batch as the official files store it: protocol-2 pickle of a dict with bytes keys."""
    blob = pickle.dumps({b"batch_label": b"synthetic", b"data": data, **labels,
                         b"filenames": [b"x.png"] * len(data)}, protocol=2)
    if old_numpy:  # the official files were written by numpy 1.x (numpy.core.multiarray)
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)


def make_cifar10(root, n=6, binary=False):
    """Synthetic CIFAR-10 in the official layout; returns {split: (x, y)} of what was written."""
    out = {}
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        xs, ys = [], []
        for k, name in enumerate(names):
            data, labels = _cifar_arrays(n, 10, hash((split, k)) % 1000)
            if binary:
                path = root / "cifar-10-batches-bin" / f"{name}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(np.concatenate([labels[:, None].astype(np.uint8), data], axis=1).tobytes())
            else:
                _write_pickle(root / "cifar-10-batches-py" / name, data, {b"labels": labels.tolist()})
            xs.append(data)
            ys.append(labels)
        out[split] = (np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys))
    return out


@pytest.mark.parametrize("binary", [False, True])
def test_cifar10_both_versions(tmp_path, binary):
    ref = make_cifar10(tmp_path, binary=binary)
    for split in ("train", "test"):
        x, y = load_cifar10(tmp_path, split=split)
        assert x.shape == (30 if split == "train" else 6, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
        np.testing.assert_array_equal(x, ref[split][0])
        np.testing.assert_array_equal(y, ref[split][1])
    xn, _ = load_cifar10(tmp_path, split="test", normalize=True)
    mean = np.array([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1)
    std = np.array([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1)
    assert xn.dtype == np.float32
    np.testing.assert_allclose(xn, (ref["test"][0] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("binary", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, binary):
    for split, name in (("train", "train"), ("test", "test")):
        data, fine = _cifar_arrays(8, 100, 1 if split == "train" else 2)
        coarse = fine // 5
        if binary:
            path = tmp_path / "cifar-100-binary" / f"{name}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(np.concatenate([coarse[:, None], fine[:, None], data], axis=1).astype(np.uint8).tobytes())
        else:
            _write_pickle(tmp_path / "cifar-100-python" / name, data,
                          {b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist()})
        x, y = load_cifar100(tmp_path, split=split)
        _, yc = load_cifar100(tmp_path, split=split, label_mode="coarse")
        np.testing.assert_array_equal(x.reshape(8, -1), data)
        np.testing.assert_array_equal(y, fine)
        np.testing.assert_array_equal(yc, coarse)
    with pytest.raises(ValueError, match="label_mode"):
        load_cifar100(tmp_path, label_mode="super")


def test_cifar_corrupt_files_are_named(tmp_path):
    make_cifar10(tmp_path, binary=True)
    bad = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    bad.write_bytes(bad.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated") as e:
        load_cifar10(tmp_path, split="test")
    assert str(bad) in str(e.value)
    data, labels = _cifar_arrays(4, 10, 0)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    _write_pickle(path, data, {b"labels": labels.tolist()[:3]})  # python version takes precedence
    with pytest.raises(ValueError, match="count mismatch") as e:
        load_cifar10(tmp_path, split="test")
    assert str(path) in str(e.value)
    _write_pickle(path, data, {b"labels": (labels + 10).tolist()})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        load_cifar10(tmp_path, split="test")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt or truncated CIFAR pickle") as e:
        load_cifar10(tmp_path, split="test")
    assert str(path) in str(e.value)


@pytest.mark.parametrize("labels", [["cat", "dog"], ["1", "2"], [b"1", b"2"], [1.0, 2.0], [1, None], "12",
                                    [[1], [2, 3]]])
def test_cifar_labels_that_are_not_integers_name_the_file(tmp_path, labels):
    data, _ = _cifar_arrays(2, 10, 0)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    _write_pickle(path, data, {b"labels": labels})
    with pytest.raises(ValueError, match="'labels' must be a list of integer labels") as e:
        load_cifar10(tmp_path, split="test")
    assert str(path) in str(e.value)


class _Evil:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-corenet-test",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match="not allowed"):
        load_cifar10(tmp_path, split="test")


# ------------------------------------------------------------------------------------------- bundled
def test_bundled_set():
    (x, y), (xt, yt) = load_bundled()
    assert x.shape == (8000, 1, 28, 28) and xt.shape == (2000, 1, 28, 28)
    assert x.dtype == np.float32 and y.dtype == np.int64 and set(np.unique(yt)) == set(range(10))
    (xu, _), _ = load_bundled(normalize=False)
    assert xu.dtype == np.uint8
    np.testing.assert_allclose(x, (xu / 255.0 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)
    files = sorted(p.name for p in BUNDLE_DIR.iterdir())
    assert "ATTRIBUTION" in files
    text = (BUNDLE_DIR / "ATTRIBUTION").read_text()
    assert "Yann LeCun" in text and "Corinna Cortes" in text and "CC BY-SA 3.0" in text
    assert sum(p.stat().st_size for p in BUNDLE_DIR.iterdir()) < 2_000_000


@needs_shared
def test_bundle_is_reproducible_from_shared_data(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bundled", REPO / "scripts" / "make_bundled.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, arr in mod.bundle_arrays(SHARED / "mnist").items():
        np.testing.assert_array_equal(read_idx(BUNDLE_DIR / name), arr, err_msg=name)
        assert (BUNDLE_DIR / name).read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0: reproducible bytes
    # byte-for-byte regeneration of a small file (compressing the 8,000 images at level 9 takes seconds)
    labels = "t10k-labels-idx1-ubyte.gz"
    assert write_idx(tmp_path / labels, mod.bundle_arrays(SHARED / "mnist")[labels]).read_bytes() == \
        (BUNDLE_DIR / labels).read_bytes()
    (_, _), (xt, yt) = load_bundled(normalize=False)
    x_all, y_all = load_mnist(SHARED, split="test")
    np.testing.assert_array_equal(xt, x_all[::5])
    np.testing.assert_array_equal(yt, y_all[::5])
