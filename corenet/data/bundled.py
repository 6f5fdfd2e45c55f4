"""A small real data set shipped inside the package: 10,000 MNIST digits, so examples run offline.

Contents of ``corenet/data/bundled/`` (gzip IDX, the official MNIST format; see its ATTRIBUTION):

* training: the first 8,000 digits of the official MNIST training set (indices 0-7,999);
* test: every 5th digit of the official 10,000-digit test set (indices 0, 5, ..., 9,995; 2,000
  digits, half from the easier first 5,000 and half from the harder last 5,000).

``scripts/make_bundled.py`` regenerates the files byte for byte from the official files.
MNIST is by Yann LeCun and Corinna Cortes (with Christopher J. C. Burges), CC BY-SA 3.0.
"""

from __future__ import annotations

from pathlib import Path

from ._common import apply_normalize
from .idx import read_idx_pair
from .mnist import MNIST

BUNDLE_DIR = Path(__file__).resolve().parent / "bundled"
N_TRAIN = 8000
TEST_STRIDE = 5


def load_bundled(normalize=True):
    """Load the MNIST subset bundled with corenet (no download, no files outside the package).

    Parameters
    ----------
    normalize : bool or (mean, std)
        True (default): float32 scaled to [0, 1] and standardised with the MNIST training-set
        constants mean 0.1307, std 0.3081. False: uint8 as stored. A ``(mean, std)`` pair uses those.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of numpy.ndarray
        x_train (8000, 1, 28, 28), x_test (2000, 1, 28, 28), float32 or uint8; labels int64 in [0, 9].

    Examples
    --------
    >>> from corenet.data import load_bundled
    >>> (x, y), (xt, yt) = load_bundled()
    >>> x.shape, x.dtype, yt.shape
    ((8000, 1, 28, 28), dtype('float32'), (2000,))
    """
    out = []
    for prefix in ("train", "t10k"):
        x, y = read_idx_pair(BUNDLE_DIR / f"{prefix}-images-idx3-ubyte.gz",
                             BUNDLE_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        out.append((apply_normalize(x, normalize, MNIST.stats, None, "load_bundled"), y))
    return out[0], out[1]
