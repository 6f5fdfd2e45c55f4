"""MNIST, Fashion-MNIST and KMNIST: 28x28 grey images in the IDX format, 60,000 train / 10,000 test.

File layouts accepted under ``root`` (the first directory holding the file wins; ``.gz`` or unpacked):
``root/``, ``root/<name>/`` (``mnist``, ``fashion-mnist``, ``kmnist``) and torchvision's
``root/<MNIST|FashionMNIST|KMNIST>/raw/``. With ``root=None`` the cache directory
(:func:`corenet.data.default_cache_dir`) ``/<name>`` is used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ._common import apply_normalize, channel_stats, check_split
from .download import default_cache_dir, download_file, resolve_base_url
from .idx import find_file, read_idx_pair


@dataclass(frozen=True, eq=False)  # hashed by identity (lru_cache key)
class _IdxDataset:
    name: str  # cache and layout sub-directory
    torch_dir: str  # torchvision's folder name
    url: str  # official base URL
    md5: dict  # file name -> md5 of the official .gz file
    stats: tuple | None  # documented (mean, std) of the training set in [0, 1], or None


MNIST = _IdxDataset(
    "mnist", "MNIST", "https://ossci-datasets.s3.amazonaws.com/mnist/",
    {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
     "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
     "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
     "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    ((0.1307,), (0.3081,)),
)
FASHION_MNIST = _IdxDataset(
    "fashion-mnist", "FashionMNIST", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
     "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
     "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
     "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    ((0.2860,), (0.3530,)),
)
KMNIST = _IdxDataset(
    "kmnist", "KMNIST", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    {"train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
     "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
     "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
     "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134"},
    None,  # no published constants we could verify: computed from the training split on disk
)


def _locate(spec: _IdxDataset, root: Path, fname: str, download: bool, base_url) -> Path:
    dirs = [root, root / spec.name, root / spec.torch_dir / "raw"]
    try:
        return find_file(fname, dirs)
    except FileNotFoundError as e:
        if not download:
            raise FileNotFoundError(f"{spec.name}: {e} (pass download=True to fetch it)") from None
    url = resolve_base_url(spec.url, base_url) + fname
    return download_file(url, root / fname, spec.md5[fname])


def _load(spec: _IdxDataset, root, split, normalize, download, base_url):
    where = f"load_{spec.name.replace('-', '_')}"
    check_split(split, where)
    root = Path(root).expanduser() if root is not None else default_cache_dir() / spec.name
    prefix = "train" if split == "train" else "t10k"
    images = _locate(spec, root, f"{prefix}-images-idx3-ubyte.gz", download, base_url)
    labels = _locate(spec, root, f"{prefix}-labels-idx1-ubyte.gz", download, base_url)
    x, y = read_idx_pair(images, labels)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{labels}: labels must lie in [0, 9], found [{y.min()}, {y.max()}]")

    def train_stats():
        if split == "train":
            return channel_stats(x)
        return _train_stats(spec, str(root), download, base_url)

    return apply_normalize(x, normalize, spec.stats, train_stats, where), y


@functools.lru_cache(maxsize=8)
def _train_stats(spec, root, download, base_url):
    x, _ = _load(spec, root, "train", False, download, base_url)
    return channel_stats(x)


_DOC = """Load {title}.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Directory holding the official files (``train-images-idx3-ubyte.gz`` etc., gzip or
        unpacked), directly or in ``{name}/`` or torchvision's ``{torch}/raw/``. Default: the cache
        directory ``$CORENET_CACHE`` or ``~/.cache/corenet``, sub-directory ``{name}``.
    split : {{"train", "test"}}
        The 60,000 training or 10,000 test images (fewer if the files hold a subset).
    normalize : bool or (mean, std)
        False: uint8 images as stored. True: float32, scaled to [0, 1] and standardised per channel
        {stats}. A ``(mean, std)`` pair (in the [0, 1] scale) standardises with those values.
    download : bool
        Fetch missing files from {url} (or ``base_url`` / ``$CORENET_DATA_URL``) into ``root``,
        verifying their md5 checksums.
    base_url : str, optional
        Mirror to download from instead of the official location.

    Returns
    -------
    x : numpy.ndarray
        (N, 1, 28, 28), uint8 or float32.
    y : numpy.ndarray
        (N,) int64 class indices in [0, 9].

    Raises
    ------
    FileNotFoundError
        A file is missing and ``download`` is False (the message lists the paths searched).
    ValueError
        A file is corrupt, truncated, has the wrong magic number, or images and labels disagree
        in count (the message names the file).
    """


def load_mnist(root=None, split="train", normalize=False, download=False, base_url=None):
    return _load(MNIST, root, split, normalize, download, base_url)


def load_fashion_mnist(root=None, split="train", normalize=False, download=False, base_url=None):
    return _load(FASHION_MNIST, root, split, normalize, download, base_url)


def load_kmnist(root=None, split="train", normalize=False, download=False, base_url=None):
    return _load(KMNIST, root, split, normalize, download, base_url)


load_mnist.__doc__ = _DOC.format(
    title="MNIST handwritten digits (LeCun, Cortes and Burges; CC BY-SA 3.0)", name="mnist", torch="MNIST",
    url=MNIST.url, stats="with the training-set constants mean 0.1307, std 0.3081")
load_fashion_mnist.__doc__ = _DOC.format(
    title="Fashion-MNIST clothing images (Xiao, Rasul and Vollgraf, Zalando Research; MIT)",
    name="fashion-mnist", torch="FashionMNIST", url=FASHION_MNIST.url,
    stats="with the training-set constants mean 0.2860, std 0.3530")
load_kmnist.__doc__ = _DOC.format(
    title="Kuzushiji-MNIST cursive Japanese characters (Clanuwat et al.; CC BY-SA 4.0)", name="kmnist",
    torch="KMNIST", url=KMNIST.url,
    stats="with the mean and std of the training split found under ``root`` (computed once per process)")
