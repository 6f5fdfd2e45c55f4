"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009): 32x32 colour images, 50,000 train / 10,000 test.

Both official versions are read:

* python: ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch`` (CIFAR-100:
  ``cifar-100-python/train`` and ``test``), pickled dicts with ``data`` (N, 3072) uint8 in
  R-then-G-then-B planes and ``labels`` (CIFAR-100: ``fine_labels`` and ``coarse_labels``). They are
  unpickled with a restricted unpickler that only builds numpy arrays, so a tampered file cannot
  run code.
* binary: ``cifar-10-batches-bin/data_batch_1..5.bin`` and ``test_batch.bin``, records of 1 label
  byte + 3072 pixel bytes (CIFAR-100: ``cifar-100-binary/train.bin``, ``test.bin``, records of
  coarse label, fine label, 3072 pixels).

Files are looked for in the archive's folder under ``root`` or in ``root`` itself; the python
version is preferred when both are present. ``download=True`` fetches the python archive from
https://www.cs.toronto.edu/~kriz/ (md5 checked) and unpacks it into ``root``; an archive
already in ``root`` with the right checksum is unpacked without downloading.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._common import apply_normalize, channel_stats, check_split
from .download import default_cache_dir, download_file, extract_tar, md5sum, resolve_base_url

_PIXELS = 3 * 32 * 32


@dataclass(frozen=True, eq=False)
class _CifarDataset:
    name: str
    py_dir: str
    py_files: dict  # split -> file names
    bin_dir: str
    bin_files: dict
    archive: str  # python-version archive
    archive_md5: str
    stats: tuple  # training-set (mean, std) per channel in [0, 1]


CIFAR10 = _CifarDataset(
    "cifar10", "cifar-10-batches-py",
    {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar-10-batches-bin",
    {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
    "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
    ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
)
CIFAR100 = _CifarDataset(
    "cifar100", "cifar-100-python", {"train": ["train"], "test": ["test"]},
    "cifar-100-binary", {"train": ["train.bin"], "test": ["test.bin"]},
    "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
    ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
)
#: md5 of the binary-version archives, for users who fetch them by hand (not downloaded by us).
BINARY_ARCHIVE_MD5 = {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
                      "cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8"}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}  # how Python 3 writes bytes in protocol-2 pickles; a pure codec

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if module == "numpy.core.multiarray":  # files written by numpy 1.x; numpy 2 moved it
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read_pickle_batch(path: Path, label_keys) -> tuple[np.ndarray, list]:
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: corrupt or truncated CIFAR pickle ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = [k for k in ("data", *label_keys) if k not in batch]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; found {sorted(batch)}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be uint8 of shape (N, {_PIXELS}), got {got}")
    labels = [_int_labels(path, k, batch[k]) for k in label_keys]
    for k, lab in zip(label_keys, labels):
        if len(lab) != len(data):
            raise ValueError(f"count mismatch in {path}: {len(data)} images but {len(lab)} {k}")
    return data, labels


def _int_labels(path: Path, key: str, value) -> np.ndarray:
    """A batch's labels as int64 (N,): a list or 1-D array of integers, nothing else (no strings)."""
    ok = isinstance(value, (list, np.ndarray))
    if isinstance(value, list):
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    labels = np.asarray(value) if ok else None
    if labels is None or labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        got = (f"dtype {labels.dtype}, shape {labels.shape}" if labels is not None else
               type(value).__name__ if not isinstance(value, list) else
               f"a list holding {sorted({type(v).__name__ for v in value})}")
        raise ValueError(f"{path}: {key!r} must be a list of integer labels. Received: {got}")
    return labels.astype(np.int64)


def _read_binary_batch(path: Path, n_label_bytes: int) -> tuple[np.ndarray, list]:
    raw = np.fromfile(path, dtype=np.uint8)
    record = n_label_bytes + _PIXELS
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: size {raw.size} bytes is not a positive multiple of the {record}-byte "
                         f"record; the file is truncated or not a CIFAR binary batch")
    rec = raw.reshape(-1, record)
    return rec[:, n_label_bytes:].copy(), [rec[:, i].astype(np.int64) for i in range(n_label_bytes)]


def _find_all(dirs, names):
    for d in dirs:
        paths = [d / n for n in names]
        if all(p.is_file() for p in paths):
            return paths
    return None


def _load(spec: _CifarDataset, root, split, normalize, download, base_url, label_mode="fine"):
    where = f"load_{spec.name}"
    check_split(split, where)
    root = Path(root).expanduser() if root is not None else default_cache_dir() / spec.name
    py_dirs, bin_dirs = [root / spec.py_dir, root], [root / spec.bin_dir, root]
    py = _find_all(py_dirs, spec.py_files[split])
    binary = None if py else _find_all(bin_dirs, spec.bin_files[split])
    if py is None and binary is None:
        if not download:
            searched = [str(d / n) for d in py_dirs for n in spec.py_files[split]]
            searched += [str(d / n) for d in bin_dirs for n in spec.bin_files[split]]
            raise FileNotFoundError(f"{spec.name}: {split} files not found; searched: {', '.join(searched)} "
                                    f"(pass download=True to fetch them)")
        archive = root / spec.archive  # an archive already there (fetched by hand, or earlier) is reused
        if not (archive.is_file() and md5sum(archive) == spec.archive_md5):
            download_file(resolve_base_url(CIFAR_URL, base_url) + spec.archive, archive, spec.archive_md5)
        extract_tar(archive, root)
        py = _find_all(py_dirs, spec.py_files[split])
        if py is None:
            raise ValueError(f"{archive}: archive did not contain {spec.py_dir}/{spec.py_files[split]}")
    cifar100 = spec is CIFAR100
    if py is not None:
        keys = ("coarse_labels", "fine_labels") if cifar100 else ("labels",)
        parts = [(p, *_read_pickle_batch(p, keys)) for p in py]
    else:
        parts = [(p, *_read_binary_batch(p, 2 if cifar100 else 1)) for p in binary]
    # labels[0] is coarse, labels[1] fine for CIFAR-100; labels[0] for CIFAR-10
    which = 0 if not cifar100 or label_mode == "coarse" else 1
    n_classes = 10 if not cifar100 else (20 if label_mode == "coarse" else 100)
    for path, _, labels in parts:
        lab = labels[which]
        if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
            raise ValueError(f"{path}: labels must lie in [0, {n_classes - 1}], found [{lab.min()}, {lab.max()}]")
    x = np.concatenate([d for _, d, _ in parts]).reshape(-1, 3, 32, 32)
    y = np.concatenate([lab[which] for _, _, lab in parts])
    # the documented constants always exist for CIFAR, so the data's own statistics are never needed
    return apply_normalize(x, normalize, spec.stats, lambda: channel_stats(x), where), y


def load_cifar10(root=None, split="train", normalize=False, download=False, base_url=None):
    """Load CIFAR-10 (Krizhevsky, 2009): 10 classes of 32x32 colour images.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Directory holding ``cifar-10-batches-py/`` or ``cifar-10-batches-bin/`` (or their files
        directly). Default: the cache directory ``$CORENET_CACHE`` or ``~/.cache/corenet``,
        sub-directory ``cifar10``.
    split : {"train", "test"}
        The five training batches (50,000 images) or the test batch (10,000).
    normalize : bool or (mean, std)
        False: uint8 as stored. True: float32 scaled to [0, 1] and standardised with the
        training-set constants mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616).
        A ``(mean, std)`` pair standardises with those values.
    download : bool
        Fetch ``cifar-10-python.tar.gz`` (md5 checked) from https://www.cs.toronto.edu/~kriz/ (or
        ``base_url`` / ``$CORENET_DATA_URL``) into ``root`` and unpack it, if the files are missing.
    base_url : str, optional
        Mirror to download from.

    Returns
    -------
    x : numpy.ndarray
        (N, 3, 32, 32) uint8 or float32, channels R, G, B.
    y : numpy.ndarray
        (N,) int64 labels in [0, 9].

    Raises
    ------
    FileNotFoundError
        Files missing and ``download`` False; the message lists the paths searched.
    ValueError
        Corrupt, truncated or inconsistent files, named in the message.
    """
    return _load(CIFAR10, root, split, normalize, download, base_url)


def load_cifar100(root=None, split="train", normalize=False, download=False, base_url=None, label_mode="fine"):
    """Load CIFAR-100 (Krizhevsky, 2009): 100 fine classes grouped in 20 coarse super-classes.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Directory holding ``cifar-100-python/`` or ``cifar-100-binary/`` (or their files directly).
        Default: the cache directory, sub-directory ``cifar100``.
    split : {"train", "test"}
        50,000 training or 10,000 test images.
    normalize : bool or (mean, std)
        As for :func:`load_cifar10`; True uses mean (0.5071, 0.4865, 0.4409), std
        (0.2673, 0.2564, 0.2762).
    download : bool
        Fetch ``cifar-100-python.tar.gz`` (md5 checked) and unpack it into ``root`` if missing.
    base_url : str, optional
        Mirror to download from.
    label_mode : {"fine", "coarse"}
        Return the 100 fine labels or the 20 coarse labels.

    Returns
    -------
    x : numpy.ndarray
        (N, 3, 32, 32) uint8 or float32.
    y : numpy.ndarray
        (N,) int64 labels in [0, 99] (fine) or [0, 19] (coarse).
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"load_cifar100: label_mode must be 'fine' or 'coarse'. Received: {label_mode!r}")
    return _load(CIFAR100, root, split, normalize, download, base_url, label_mode)
