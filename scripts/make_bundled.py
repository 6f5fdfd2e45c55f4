"""Regenerate corenet/data/bundled/ from the shared MNIST files (the bundle is committed; this makes it reproducible).

Usage: python scripts/make_bundled.py [SOURCE_DIR]   (default: ../shared/data/mnist from the repository root)

Takes the first 8,000 training digits and every 5th of the 10,000 official test digits (indices
0, 5, ..., 9995: 1,000 from each half, since the first 5,000 test digits are the easier ones) and writes
them as gzip IDX files with fixed gzip metadata, so the output is byte-for-byte reproducible.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corenet.data.bundled import BUNDLE_DIR, N_TRAIN, TEST_STRIDE  # noqa: E402
from corenet.data.idx import read_idx_pair, write_idx  # noqa: E402


def bundle_arrays(source: Path) -> dict:
    """The four arrays of the bundle (file name -> uint8 array), taken from the MNIST files in ``source``."""
    xtr, ytr = read_idx_pair(source / "train-images-idx3-ubyte.gz", source / "train-labels-idx1-ubyte.gz")
    xte, yte = read_idx_pair(source / "t10k-images-idx3-ubyte.gz", source / "t10k-labels-idx1-ubyte.gz")
    if len(xtr) < N_TRAIN or len(xte) != 10000:
        raise SystemExit(f"{source}: need >= {N_TRAIN} training and exactly 10000 test digits, "
                         f"found {len(xtr)} and {len(xte)}")
    return {
        "train-images-idx3-ubyte.gz": xtr[:N_TRAIN, 0],
        "train-labels-idx1-ubyte.gz": ytr[:N_TRAIN].astype("uint8"),
        "t10k-images-idx3-ubyte.gz": xte[::TEST_STRIDE, 0],
        "t10k-labels-idx1-ubyte.gz": yte[::TEST_STRIDE].astype("uint8"),
    }


def make_bundle(source: Path, dest: Path) -> list[Path]:
    """Write the bundled files from the MNIST files in ``source`` to ``dest``; return their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    return [write_idx(dest / name, arr, compress=True) for name, arr in bundle_arrays(source).items()]


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "mnist"
    for p in make_bundle(src, BUNDLE_DIR):
        print(f"{p.relative_to(REPO)}: {p.stat().st_size:,} bytes")
