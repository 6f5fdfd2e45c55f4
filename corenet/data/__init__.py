"""Data for corenet: readers of the official formats, a bundled MNIST subset, a batch loader, augmentation.

>>> from corenet.data import load_bundled, DataLoader
>>> (x, y), (x_test, y_test) = load_bundled()
>>> batches = DataLoader(x, y, batch_size=64, seed=0)

Readers: :func:`load_mnist`, :func:`load_fashion_mnist`, :func:`load_kmnist` (IDX),
:func:`load_cifar10`, :func:`load_cifar100` (python pickles or binary). They return uint8 images
(N, C, H, W) and int64 labels, or float32 standardised images with ``normalize=True``; with
``download=True`` missing files are fetched (md5-checked, atomically) into ``root`` or the cache
directory (``$CORENET_CACHE``, default ``~/.cache/corenet``). Nothing here reads files outside the
package or the directories you name.

Your own images: :func:`load_image_folder` reads one sub-folder per class (via Pillow, the ``images``
extra) into float32 [0, 1] or uint8 arrays, cached in the same cache directory, and
:func:`train_val_split` holds out a shuffled, stratified validation set.
"""

from . import augment
from ._common import channel_stats, standardize
from .augment import (
    ColorJitter,
    Compose,
    GaussianNoise,
    Lighting,
    Normalize,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRotation,
    RandomScale,
    RandomShift,
    RandomVerticalFlip,
)
from .bundled import load_bundled
from .cifar import load_cifar10, load_cifar100
from .download import default_cache_dir, download_file
from .idx import read_idx, write_idx
from .images import decode_image, load_image_folder, train_val_split
from .loader import DataLoader
from .mnist import load_fashion_mnist, load_kmnist, load_mnist

__all__ = [
    "augment",
    "load_mnist",
    "load_fashion_mnist",
    "load_kmnist",
    "load_cifar10",
    "load_cifar100",
    "load_bundled",
    "decode_image",
    "load_image_folder",
    "train_val_split",
    "read_idx",
    "write_idx",
    "default_cache_dir",
    "download_file",
    "channel_stats",
    "standardize",
    "DataLoader",
    "Compose",
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "RandomCrop",
    "RandomShift",
    "RandomAffine",
    "RandomRotation",
    "RandomScale",
    "ColorJitter",
    "Lighting",
    "GaussianNoise",
    "Normalize",
]
