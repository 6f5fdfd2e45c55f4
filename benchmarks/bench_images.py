"""load_image_folder: the first load (decode every file, write the cache) against a cached load.

Generates a folder of ``--n`` JPEG files (default 2,000) in ``--classes`` class folders: ``--source``
pixels (default 160x120, quality 90), each a few filled shapes on a noisy background so that JPEG has
real work to do. Then, with the cache in a fresh temporary directory each round:

- ``decode``: ``cache=False``, every file decoded (Pillow, one thread), resized and centre-cropped;
- ``first``: ``cache=True`` on an empty cache: the same decoding plus writing the ``.npy`` entry;
- ``cached``: the same call again: the file list is stat-ed, the key hashed, the entry memory-mapped
  and converted to float32 in [0, 1] (``normalize=True``, what training reads);
- ``cached uint8``: ``normalize=False``: the memory map itself, no conversion.

Before anything is timed, the cached array is checked equal to the decoded one, and one image to
``decode_image`` of its file. The JPEG files stay in the OS page cache after the first round, so
``decode`` and ``first`` measure decoding, not the disk.

    python benchmarks/bench_images.py --n 2000 --size 64,64 --repeat 3 --json images.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def make_folder(root: str, n: int, classes: int, source, seed: int = 0) -> None:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    width, height = source
    for i in range(n):
        label = i % classes
        folder = os.path.join(root, f"class_{label:02d}")
        os.makedirs(folder, exist_ok=True)
        noise = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
        img = Image.fromarray(noise, "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
            x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
            colour = tuple(int(v) for v in rng.integers(100, 256, 3))
            (draw.ellipse if (label + _) % 2 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
        img.save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="JPEG files to generate")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--source", default="160,120", help="W,H of the generated files")
    ap.add_argument("--size", default="64,64", help="H,W image_size passed to load_image_folder")
    ap.add_argument("--repeat", type=int, default=3, help="rounds, each with a fresh cache directory")
    ap.add_argument("--dir", help="folder to generate into (default: a temporary one, removed afterwards)")
    ap.add_argument("--json", help="write the results to this path")
    args = ap.parse_args(argv)

    from corenet.data import decode_image, load_image_folder

    source = tuple(int(v) for v in args.source.split(","))
    size = tuple(int(v) for v in args.size.split(","))
    with tempfile.TemporaryDirectory(prefix="bench_images_") as tmp:
        root = args.dir or os.path.join(tmp, "folder")
        t_make, _ = timed(make_folder, root, args.n, args.classes, source)
        megabytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs) / 1e6
        print(f"{args.n} JPEG files, {source[0]}x{source[1]}, {megabytes:.1f} MB in {args.classes} folders "
              f"(generated in {t_make:.1f} s); image_size {size}")

        # correctness first: cached == decoded, and one file == decode_image of it
        check_cache = os.path.join(tmp, "check")
        x0, y0, names = load_image_folder(root, size, cache=True, cache_dir=check_cache)
        x1, y1, _ = load_image_folder(root, size, cache=True, cache_dir=check_cache)
        assert np.array_equal(x0, x1) and np.array_equal(y0, y1) and len(names) == args.classes
        first_file = os.path.join(root, names[0], sorted(os.listdir(os.path.join(root, names[0])))[0])
        assert np.array_equal(x0[0], decode_image(first_file, size))

        times = {"decode": [], "first": [], "cached": [], "cached uint8": []}
        for r in range(args.repeat):
            cache_dir = os.path.join(tmp, f"cache{r}")
            times["decode"].append(timed(load_image_folder, root, size, cache=False)[0])
            times["first"].append(timed(load_image_folder, root, size, cache_dir=cache_dir)[0])
            times["cached"].append(timed(load_image_folder, root, size, cache_dir=cache_dir)[0])
            times["cached uint8"].append(timed(load_image_folder, root, size, normalize=False, cache_dir=cache_dir)[0])
        entry = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(tmp, "cache0"))
                    for f in fs) / 1e6

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'load':14s} {'median s':>9s} {'images/s':>10s} {'vs first':>9s}   (all runs, s)")
    for k, v in times.items():
        print(f"{k:14s} {med[k]:9.3f} {args.n / med[k]:10,.0f} {med['first'] / med[k]:8.1f}x   "
              + " ".join(f"{t:.3f}" for t in v))
    print(f"cache entry: {entry:.1f} MB (uint8 {args.n} x {3 * size[0] * size[1]} bytes + labels + key)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "classes": args.classes, "source": source, "size": size, "jpeg_mb": megabytes,
                       "cache_mb": entry, "seconds": times, "median_s": med, "python": sys.version.split()[0],
                       "load_average": os.getloadavg()}, f, indent=2)


if __name__ == "__main__":
    main()
