"""Your own images: a folder of class sub-folders read into NCHW arrays, and a stratified train/validation split.

>>> from corenet.data import load_image_folder, train_val_split
>>> x, y, classes = load_image_folder("photos", image_size=(64, 64))   # photos/cat/*.jpg, photos/dog/*.png
>>> (x_train, y_train), (x_val, y_val) = train_val_split(x, y, val_fraction=0.2)

Decoding needs Pillow (``pip install 'corenet[images]'``), imported only when a folder is read. The
decoded array is cached as a ``.npy`` file in the cache directory (``$CORENET_CACHE``, default
``~/.cache/corenet``, sub-directory ``images``), never in the folder being read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .download import default_cache_dir

__all__ = ["load_image_folder", "decode_image", "train_val_split", "IMAGE_EXTENSIONS"]

#: File name endings read as images (compared case-insensitively); other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_COLORS = {"rgb": ("RGB", 3), "gray": ("L", 1)}
_RESIZES = ("crop", "stretch")
_CACHE_VERSION = 2  # bump when the decoded pixels of the same files would change (2: JPEG draft decoding)
_PROGRESS_MIN = 1000  # folders with at least this many files report progress on stderr


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError as e:
        raise ImportError("load_image_folder needs Pillow to decode images: pip install 'corenet[images]' "
                          "(or pip install Pillow)") from e
    return Image, ImageOps


def _check_size(image_size):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    ok = isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in image_size)
    if not ok:
        raise ValueError(f"load_image_folder: image_size must be (height, width), two positive ints. "
                         f"Received: image_size={image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _image_entries(folder: Path, parts: tuple) -> list:
    """(path components below the root, stat) of every image file under ``folder``, recursively; hidden
    files and folders are skipped and symlinked folders not followed. One ``os.scandir`` per folder and one
    stat per file: a cached load of 2,000 files is mostly this scan."""
    found, pending = [], [(folder, parts)]
    while pending:
        where, prefix = pending.pop()
        with os.scandir(where) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), prefix + (entry.name,)))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
                    found.append((prefix + (entry.name,), entry.stat()))
    return found


def _scan(root: Path):
    """Sorted class names and, per file, (relative path, class index), with sizes and mtimes for the cache key."""
    if not root.is_dir():
        raise FileNotFoundError(f"load_image_folder: {root} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"load_image_folder: {root} holds no class sub-folders; expected one sub-folder per "
                         f"class with the images inside (e.g. {root / 'cat'}/1.jpg, {root / 'dog'}/2.png)")
    files, stamps = [], []
    for label, name in enumerate(classes):
        found = _image_entries(root / name, (name,))
        if not found:
            raise ValueError(f"load_image_folder: class folder {root / name} holds no images; every sub-folder "
                             f"of {root} is a class and needs at least one file ending in "
                             f"{', '.join(IMAGE_EXTENSIONS)}")
        for parts, st in sorted(found, key=lambda entry: entry[0]):  # by path components, as pathlib sorts
            rel = "/".join(parts)
            files.append((rel, label))
            stamps.append((rel, st.st_size, st.st_mtime_ns))
    return classes, files, stamps


_DRAFT_GAP = 2  # keep at least twice the pixels the resize needs (Pillow's own thumbnail() default)


def _draft(img, size, resize) -> None:
    """A large JPEG decodes at 1/2, 1/4 or 1/8 scale in the DCT domain (``Image.draft``) when that still
    leaves ``_DRAFT_GAP`` times the pixels the crop or stretch needs: a phone photo (4032x3024) read at
    224x224 decodes some 10x faster, and the antialiased resize that follows sees the same picture."""
    if img.format != "JPEG":
        return
    height, width = size
    w, h = img.size  # as stored; EXIF orientations 5-8 display it transposed
    transposed = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    shown_w, shown_h = (h, w) if transposed else (w, h)
    if resize == "crop":
        scale = max(width / shown_w, height / shown_h)
        need_w, need_h = shown_w * scale, shown_h * scale
    else:
        need_w, need_h = width, height
    if transposed:
        need_w, need_h = need_h, need_w
    img.draft(None, (int(np.ceil(need_w * _DRAFT_GAP)), int(np.ceil(need_h * _DRAFT_GAP))))


def _decode(path: Path, size, mode, resize, Image, ImageOps) -> np.ndarray:
    height, width = size
    with Image.open(path) as img:
        _draft(img, size, resize)
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")  # Pillow warns when a palette with transparency goes straight to RGB/L
        img = img.convert(mode)
        if resize == "crop":
            img = ImageOps.fit(img, (width, height), method=Image.Resampling.BILINEAR)
        elif img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_image(path, image_size=(224, 224), color="rgb", resize="crop", normalize=True) -> np.ndarray:
    """One image file as ``(C, H, W)``, decoded exactly as ``load_image_folder`` decodes each file (same
    arguments). Raises ValueError naming the file when it cannot be decoded, ImportError without Pillow."""
    size = _check_size(image_size)
    if color not in _COLORS:
        raise ValueError(f"decode_image: color must be one of {tuple(_COLORS)}. Received: color={color!r}")
    if resize not in _RESIZES:
        raise ValueError(f"decode_image: resize must be one of {_RESIZES}. Received: resize={resize!r}")
    Image, ImageOps = _pillow()
    try:
        arr = _decode(Path(path), size, _COLORS[color][0], resize, Image, ImageOps)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot be decoded as an image ({type(e).__name__}: {e})") from e
    return arr.astype(np.float32) * np.float32(1.0 / 255.0) if normalize else arr


class _Progress:
    def __init__(self, total: int):
        self.total, self.on = total, total >= _PROGRESS_MIN
        self.tty = self.on and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.last = -1

    def update(self, done: int):
        if not self.on:
            return
        pct = 100 * done // self.total
        step = 1 if self.tty else 25
        if pct // step != self.last // step or done == self.total:
            self.last = pct
            end = "" if self.tty and done < self.total else "\n"
            prefix = "\r" if self.tty else ""
            print(f"{prefix}load_image_folder: decoded {done}/{self.total} images ({pct}%)", end=end,
                  file=sys.stderr, flush=True)


def _cache_paths(root: Path, stamps, size, color, resize, cache_dir):
    key = json.dumps({"version": _CACHE_VERSION, "files": stamps, "image_size": list(size), "color": color,
                      "resize": resize}, separators=(",", ":"))
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    base = default_cache_dir(cache_dir) / "images"
    stem = f"{root.name or 'root'}-{digest}"
    return base / f"{stem}.x.npy", base / f"{stem}.y.npy", base / f"{stem}.json"


def _read_cache(paths):
    xp, yp, mp = paths
    if not (mp.is_file() and xp.is_file() and yp.is_file()):
        return None
    try:
        meta = json.loads(mp.read_text())
        x = np.load(xp, mmap_mode="r")
        y = np.load(yp)
        if len(x) != len(y) or len(x) != meta["n"]:
            return None
        return x, y, meta
    except (OSError, ValueError, KeyError):  # an unreadable cache entry is rebuilt, never trusted
        return None


def _save_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_cache(paths, x, y, meta) -> None:
    xp, yp, mp = paths
    try:
        xp.parent.mkdir(parents=True, exist_ok=True)
        _save_atomic(xp, lambda f: np.save(f, x))
        _save_atomic(yp, lambda f: np.save(f, y))
        _save_atomic(mp, lambda f: f.write(json.dumps(meta).encode()))  # last: its presence marks a complete entry
    except OSError as e:
        warnings.warn(f"load_image_folder: could not write the cache in {xp.parent} ({e}); "
                      "the next load decodes again", RuntimeWarning, stacklevel=3)


def load_image_folder(root, image_size=(224, 224), color="rgb", normalize=True, cache=True, skip_corrupt=False,
                      resize="crop", cache_dir=None):
    """Read a folder of class sub-folders into ``(x, y, class_names)``.

    Parameters
    ----------
    root : str or os.PathLike
        Folder with one sub-folder per class (``root/cat/*.jpg``, ``root/dog/*.png``; sub-folders of a
        class are searched too). Classes are the sub-folder names, sorted; label ``i`` is
        ``class_names[i]``. Files ending in .png, .jpg, .jpeg, .bmp, .gif or .webp (any case) are read;
        other files and hidden files/folders are ignored.
    image_size : (height, width) or int
        Size of every output image.
    color : {"rgb", "gray"}
        Channels of the output: 3 (RGB) or 1 (Pillow's ``L`` luma). Any input mode (grayscale, RGBA,
        CMYK, palette, ...) is converted; an alpha channel is dropped. EXIF orientation is applied
        first, and an animated GIF gives its first frame.
    normalize : bool
        True: float32 in [0, 1] (pixel / 255). False: uint8 as decoded.
    cache : bool
        Keep the decoded uint8 array in the cache directory (``cache_dir``, else ``$CORENET_CACHE``, else
        ``~/.cache/corenet``; sub-directory ``images``), keyed by a hash of the sorted relative file
        list, file sizes and modification times, ``image_size``, ``color`` and ``resize``. A later load
        of an unchanged folder reads that file (memory-mapped) instead of decoding; any added, removed
        or modified file makes a new entry. Nothing is ever written inside ``root``.
    skip_corrupt : bool
        False: an unreadable image raises ValueError naming it. True: such files are left out and one
        warning lists them.
    resize : {"crop", "stretch"}
        "crop" (default): scale so that the image covers ``image_size`` (the shorter side, relative to the
        target's aspect, fits exactly) and cut the centre, keeping the aspect ratio. "stretch": resize
        straight to ``image_size``, distorting the aspect ratio. Both use bilinear filtering (antialiased
        when shrinking).

    Returns
    -------
    x : numpy.ndarray
        (N, C, H, W): float32 in [0, 1], or uint8 with ``normalize=False``. With ``normalize=False`` and
        a cache hit this is a read-only memory map (``np.array(x)`` copies it).
    y : numpy.ndarray
        (N,) int64 class indices, in the order of ``class_names``; samples come sorted by class then path.
    class_names : list of str

    Raises
    ------
    ImportError
        Pillow is not installed (install the ``images`` extra).
    FileNotFoundError
        ``root`` is not a directory.
    ValueError
        ``root`` holds no class sub-folders, a class folder holds no images, an image cannot be decoded
        (the message names the file) or an argument is invalid.
    """
    size = _check_size(image_size)
    if color not in _COLORS:
        raise ValueError(f"load_image_folder: color must be one of {tuple(_COLORS)}. Received: color={color!r}")
    if resize not in _RESIZES:
        raise ValueError(f"load_image_folder: resize must be one of {_RESIZES}. Received: resize={resize!r}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise ValueError(f"load_image_folder: normalize must be True or False. Received: normalize={normalize!r}")
    root = Path(root).expanduser()
    Image, ImageOps = _pillow()
    classes, files, stamps = _scan(root)
    mode, channels = _COLORS[color]
    paths = _cache_paths(root.resolve(), stamps, size, color, resize, cache_dir) if cache else None
    hit = _read_cache(paths) if cache else None
    if hit is not None:
        x, y, meta = hit
        skipped = meta.get("skipped", [])
        if skipped and not skip_corrupt:
            raise ValueError(f"load_image_folder: {root / skipped[0]}: cannot be decoded as an image "
                             f"(pass skip_corrupt=True to leave it out)")
    else:
        x = np.empty((len(files), channels, *size), dtype=np.uint8)
        keep, skipped = [], []
        progress = _Progress(len(files))
        for i, (rel, _) in enumerate(files):
            path = root / rel
            try:
                x[len(keep)] = _decode(path, size, mode, resize, Image, ImageOps)
                keep.append(i)
            except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
                if not skip_corrupt:
                    raise ValueError(f"load_image_folder: {path}: cannot be decoded as an image "
                                     f"({type(e).__name__}: {e}); pass skip_corrupt=True to leave it out") from e
                skipped.append(rel)
            progress.update(i + 1)
        if not keep:
            raise ValueError(f"load_image_folder: no image under {root} could be decoded")
        x = x[:len(keep)]
        y = np.array([files[i][1] for i in keep], dtype=np.int64)
        if cache:
            _write_cache(paths, x, y, {"n": len(keep), "classes": classes, "skipped": skipped})
    if skipped:
        warnings.warn(f"load_image_folder: skipped {len(skipped)} unreadable file(s) under {root}: "
                      f"{', '.join(skipped)}", RuntimeWarning, stacklevel=2)
    if normalize:
        x = np.asarray(x, dtype=np.float32) * np.float32(1.0 / 255.0)
    return x, np.asarray(y, dtype=np.int64), list(classes)


def _round_half_up(v: float) -> int:
    return int(np.floor(v + 0.5))


def _val_count(count: int, fraction: float) -> int:
    if count < 2:
        return 0
    return min(max(_round_half_up(fraction * count), 1), count - 1)


def train_val_split(x, y, val_fraction=0.1, stratify=True, seed=0):
    """Split ``(x, y)`` into shuffled training and validation sets.

    Parameters
    ----------
    x : numpy.ndarray
        Samples (N, ...).
    y : numpy.ndarray
        (N,) targets; with ``stratify=True`` integer class labels.
    val_fraction : float in (0, 1)
        Share of the samples held out. Stratified: each class gives ``round(val_fraction * count)``
        samples (halves rounded up), at least 1 when it has 2 or more and never all of them (a class with
        a single sample stays in training). Not stratified: the same rule over all N samples.
    stratify : bool
        Keep each class's share the same in both sets (arrays read from class folders come sorted by
        class, so a plain cut of the end would hold out whole classes).
    seed : int
        The split and both orders are a function of ``seed`` alone.

    Returns
    -------
    (x_train, y_train), (x_val, y_val)
        New arrays (copies), each set in a shuffled order.
    """
    where = "train_val_split"
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise ValueError(f"{where}: x and y need the same number of samples along axis 0. "
                         f"Received: x.shape={x.shape}, y.shape={y.shape}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"{where}: val_fraction must be a number in (0, 1). Received: val_fraction={val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{where}: seed must be an int. Received: seed={seed!r}")
    n, fraction = len(y), float(val_fraction)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed)]))
    if stratify:
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{where}: stratify=True needs y as (N,) integer class labels. Received: "
                             f"y.shape={y.shape}, y.dtype={y.dtype} (pass stratify=False for other targets)")
        val_parts = []
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            val_parts.append(rng.permutation(members)[:_val_count(len(members), fraction)])
        val_idx = np.concatenate(val_parts) if val_parts else np.empty(0, dtype=np.intp)
    else:
        val_idx = rng.permutation(n)[:_val_count(n, fraction)]
    if len(val_idx) == 0:
        raise ValueError(f"{where}: val_fraction={fraction} of {n} samples leaves an empty validation set "
                         f"(every class has fewer than 2 samples)")
    is_val = np.zeros(n, dtype=bool)
    is_val[val_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_val))
    val_idx = rng.permutation(np.flatnonzero(is_val))
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])
