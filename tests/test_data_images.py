"""load_image_folder (class folders via Pillow, EXIF, modes, resize, cache, errors) and train_val_split."""

import os

import numpy as np
import pytest

from corenet.data import load_image_folder, train_val_split

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CORENET_CACHE", str(cache))
    return cache


def _solid(size, rgb, mode="RGB"):
    return Image.new(mode, size, rgb)


def _make_folder(root):
    """3 classes: 'a' red PNG + red palette GIF, 'b' green JPEG with EXIF rotation + green RGBA PNG,
    'c' grey BMP (mode L). Names are chosen so the sorted class order is a, b, c."""
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "c").mkdir()
    _solid((10, 8), (255, 0, 0)).save(root / "a" / "1.png")
    _solid((6, 6), (255, 0, 0)).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "a" / "2.gif")
    jpg = _solid((16, 8), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise on display
    jpg.save(root / "b" / "1.JPG", exif=exif, quality=95)
    _solid((8, 8), (0, 255, 0, 128), "RGBA").save(root / "b" / "2.png")
    _solid((12, 12), 100, "L").save(root / "c" / "1.bmp")
    (root / "c" / "notes.txt").write_text("not an image, ignored")
    return root


def _cache_files(cache):
    return sorted(p.name for p in (cache / "images").glob("*")) if (cache / "images").exists() else []


def test_shapes_labels_values(tmp_path):
    root = _make_folder(tmp_path / "data")
    x, y, classes = load_image_folder(root, image_size=(4, 6))
    assert classes == ["a", "b", "c"]
    assert x.shape == (5, 3, 4, 6) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 1, 1, 2]
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x[0].mean(axis=(1, 2)), [1, 0, 0], atol=1e-6)  # PNG
    np.testing.assert_allclose(x[1].mean(axis=(1, 2)), [1, 0, 0], atol=0.02)  # palette GIF
    np.testing.assert_allclose(x[2].mean(axis=(1, 2)), [0, 1, 0], atol=0.05)  # JPEG
    np.testing.assert_allclose(x[3].mean(axis=(1, 2)), [0, 1, 0], atol=1e-6)  # RGBA: alpha dropped
    np.testing.assert_allclose(x[4], 100 / 255, atol=1e-6)  # grey BMP -> three equal channels
    raw, y2, _ = load_image_folder(root, image_size=(4, 6), normalize=False, cache=False)
    assert raw.dtype == np.uint8 and raw.shape == x.shape and y2.tolist() == y.tolist()
    np.testing.assert_allclose(raw / 255.0, x, atol=1e-6)


def test_gray_mode_and_int_size(tmp_path):
    root = _make_folder(tmp_path / "data")
    x, _, _ = load_image_folder(root, image_size=5, color="gray", normalize=False)
    assert x.shape == (5, 1, 5, 5) and x.dtype == np.uint8
    assert x[4].min() == x[4].max() == 100
    assert abs(int(x[0, 0, 0, 0]) - 76) <= 1  # luma of pure red (0.299 * 255)


def test_exif_orientation_and_crop_vs_stretch(tmp_path):
    root = tmp_path / "data"
    (root / "k").mkdir(parents=True)
    img = Image.new("RGB", (40, 20), (0, 0, 0))  # wide: left half black, right half white
    img.paste((255, 255, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 20 wide, 40 tall, white at the bottom
    img.save(root / "k" / "r.jpg", exif=exif, quality=100)
    x, _, _ = load_image_folder(root, image_size=(8, 4), normalize=False, resize="stretch", cache=False)
    assert x[0, 0, :2].mean() < 30 and x[0, 0, -2:].mean() > 225  # top dark, bottom bright: rotated

    (root / "k" / "r.jpg").unlink()
    stripes = Image.new("L", (30, 10), 0)  # white band in the left third, black elsewhere
    stripes.paste(255, (0, 0, 10, 10))
    stripes.save(root / "k" / "s.png")
    crop, _, _ = load_image_folder(root, image_size=(10, 10), color="gray", normalize=False, cache=False)
    stretch, _, _ = load_image_folder(root, image_size=(10, 10), color="gray", normalize=False, resize="stretch",
                                      cache=False)
    assert crop.max() == 0  # the centre 10x10 of a 30x10 image misses the white band
    assert stretch[0, 0, :, :2].min() > 200  # stretched: the band becomes the left third
    assert crop.shape == stretch.shape == (1, 1, 10, 10)


def test_cache_hit_invalidation_and_user_folder_untouched(tmp_path, _cache):
    root = _make_folder(tmp_path / "data")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    x1, y1, c1 = load_image_folder(root, image_size=(4, 4))
    entries = _cache_files(_cache)
    assert len(entries) == 3 and any(e.endswith(".x.npy") for e in entries)
    x2, y2, c2 = load_image_folder(root, image_size=(4, 4), normalize=False)
    assert isinstance(x2, np.memmap)  # served from the cache file
    np.testing.assert_allclose(x2 / 255.0, x1, atol=1e-6)
    x2n, _, _ = load_image_folder(root, image_size=(4, 4))
    np.testing.assert_array_equal(x2n, x1)
    assert y2.tolist() == y1.tolist() and c2 == c1
    assert _cache_files(_cache) == entries  # no new entry
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written in the folder

    # another size is another entry; a changed file invalidates
    load_image_folder(root, image_size=(3, 3))
    assert len(_cache_files(_cache)) == 6
    _solid((10, 8), (0, 0, 255)).save(root / "a" / "1.png")
    st = (root / "a" / "1.png").stat()
    os.utime(root / "a" / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    x3, _, _ = load_image_folder(root, image_size=(4, 4))
    np.testing.assert_allclose(x3[0].mean(axis=(1, 2)), [0, 0, 1], atol=1e-6)
    assert len(_cache_files(_cache)) == 9

    # cache=False writes nothing
    for p in (_cache / "images").iterdir():
        p.unlink()
    load_image_folder(root, image_size=(4, 4), cache=False)
    assert _cache_files(_cache) == []


def test_corrupt_file_error_and_skip(tmp_path, _cache):
    root = _make_folder(tmp_path / "data")
    (root / "b" / "bad.png").write_bytes(b"this is not a png")
    good = Image.new("RGB", (32, 32), (1, 2, 3))
    good.save(root / "c" / "trunc.jpg", quality=90)
    data = (root / "c" / "trunc.jpg").read_bytes()
    (root / "c" / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"bad\.png"):
        load_image_folder(root, image_size=(4, 4))
    assert _cache_files(_cache) == []
    with pytest.warns(RuntimeWarning, match=r"skipped 2 .*b/bad\.png.*c/trunc\.jpg"):
        x, y, classes = load_image_folder(root, image_size=(4, 4), skip_corrupt=True)
    assert x.shape[0] == 5 and y.tolist() == [0, 0, 1, 1, 2]
    with pytest.warns(RuntimeWarning, match="skipped 2"):  # a cache hit warns again
        x2, _, _ = load_image_folder(root, image_size=(4, 4), skip_corrupt=True)
    np.testing.assert_array_equal(x2, x)
    with pytest.raises(ValueError, match=r"bad\.png"):  # and without skip_corrupt still refuses
        load_image_folder(root, image_size=(4, 4))


def test_empty_class_no_subfolders_and_arguments(tmp_path):
    root = _make_folder(tmp_path / "data")
    (root / "d").mkdir()
    (root / "d" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"class folder .*d holds no images"):
        load_image_folder(root, image_size=(4, 4))
    flat = tmp_path / "flat"
    flat.mkdir()
    _solid((4, 4), (0, 0, 0)).save(flat / "x.png")
    with pytest.raises(ValueError, match=r"flat holds no class sub-folders; expected one sub-folder per class"):
        load_image_folder(flat, image_size=(4, 4))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_image_folder(tmp_path / "missing", image_size=(4, 4))
    for kwargs, msg in [({"image_size": (0, 4)}, "image_size"), ({"image_size": (4, 4), "color": "cmyk"}, "color"),
                        ({"image_size": (4, 4), "resize": "pad"}, "resize")]:
        with pytest.raises(ValueError, match=msg):
            load_image_folder(flat, **kwargs)


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"corenet\[images\]"):
        load_image_folder(tmp_path, image_size=(4, 4))


def test_train_val_split_stratified_and_deterministic():
    y = np.repeat(np.arange(3), [50, 30, 2]).astype(np.int64)
    x = np.arange(len(y) * 2, dtype=np.float32).reshape(len(y), 2)
    (xt, yt), (xv, yv) = train_val_split(x, y, val_fraction=0.1, seed=3)
    assert np.bincount(yv, minlength=3).tolist() == [5, 3, 1]
    assert np.bincount(yt, minlength=3).tolist() == [45, 27, 1]
    rows = {tuple(r) for r in np.concatenate([xt, xv])}
    assert len(rows) == len(y)  # a partition
    assert (y[(xt[:, 0] // 2).astype(int)] == yt).all() and (y[(xv[:, 0] // 2).astype(int)] == yv).all()
    assert not np.all(np.diff(yt) >= 0)  # shuffled, not sorted by class
    (xt2, _), (xv2, _) = train_val_split(x, y, val_fraction=0.1, seed=3)
    np.testing.assert_array_equal(xt2, xt)
    np.testing.assert_array_equal(xv2, xv)
    (_, _), (xv3, _) = train_val_split(x, y, val_fraction=0.1, seed=4)
    assert not np.array_equal(np.sort(xv3[:, 0]), np.sort(xv[:, 0]))
    (_, _), (_, yv4) = train_val_split(x, y, val_fraction=0.25, stratify=False, seed=0)
    assert len(yv4) == 21  # round(0.25 * 82) = 20.5, halves rounded up


def test_train_val_split_errors():
    x, y = np.zeros((10, 1)), np.arange(10) % 2
    for frac in (0, 1, 1.5, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="val_fraction"):
            train_val_split(x, y, val_fraction=frac)
    with pytest.raises(ValueError, match="same number of samples"):
        train_val_split(x, y[:5])
    with pytest.raises(ValueError, match="integer class labels"):
        train_val_split(x, y.astype(np.float32))
    with pytest.raises(TypeError, match="seed"):
        train_val_split(x, y, seed=1.5)
    with pytest.raises(ValueError, match="empty validation set"):
        train_val_split(x[:3], np.arange(3))


def test_fit_validation_split_is_shuffled_and_stratified():
    from corenet import Input, Model
    from corenet import layers as L

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 50).astype(np.int64)  # sorted by class, as load_image_folder returns it
    x = (rng.normal(size=(100, 4)) + y[:, None] * 2.0).astype(np.float32)
    seen = {}

    class Spy(Model):
        def evaluate(self, xv, yv, **kwargs):
            seen.setdefault("y", np.array(yv))
            seen.setdefault("x", np.array(xv[0] if isinstance(xv, (list, tuple)) else xv))
            return super().evaluate(xv, yv, **kwargs)

    inp = Input((4,))
    model = Spy(inp, L.Linear(2, name="fc")(inp), seed=0)
    model.compile("sgd", "cross_entropy")
    h = model.fit(x, y, batch_size=16, epochs=1, validation_split=0.2, seed=7, verbose=0).history
    assert "val_loss" in h
    assert np.bincount(seen["y"], minlength=2).tolist() == [10, 10]  # not the last 20 (all class 1)
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(r) in rows for r in seen["x"].tolist()) and len(seen["x"]) == 20
    assert not np.array_equal(seen["x"], x[80:])

    def held_out(seed):
        seen.clear()
        model.fit(x, y, batch_size=16, epochs=1, validation_split=0.2, seed=seed, verbose=0)
        return seen["x"]

    np.testing.assert_array_equal(held_out(7), held_out(7))  # a function of the fit seed
    assert not np.array_equal(held_out(7), held_out(8))


def test_cmyk_webp_and_progress_line(tmp_path, monkeypatch, capsys):
    from corenet.data import images

    root = tmp_path / "data"
    (root / "m").mkdir(parents=True)
    Image.new("CMYK", (6, 6), (0, 255, 255, 0)).save(root / "m" / "cmyk.jpg", quality=95)  # red in CMYK
    _solid((6, 6), (0, 0, 255)).save(root / "m" / "blue.webp", lossless=True)
    monkeypatch.setattr(images, "_PROGRESS_MIN", 2)
    x, y, classes = load_image_folder(root, image_size=(3, 3), cache=False)
    assert classes == ["m"] and y.tolist() == [0, 0]
    np.testing.assert_allclose(x[0].mean(axis=(1, 2)), [0, 0, 1], atol=1e-6)  # blue.webp sorts first
    assert x[1, 0].mean() > 0.9 and x[1, 1:].mean() < 0.1
    assert "decoded 2/2 images (100%)" in capsys.readouterr().err
    monkeypatch.setattr(images, "_PROGRESS_MIN", 1000)
    load_image_folder(root, image_size=(3, 3), cache=False)
    assert capsys.readouterr().err == ""


def test_cli_trains_on_an_image_folder(tmp_path, capsys):
    from corenet import cli

    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for name, value in (("dark", 30), ("light", 220)):
        (root / name).mkdir(parents=True)
        for i in range(10):
            px = np.clip(value + rng.normal(0, 10, (20, 24)), 0, 255).astype(np.uint8)
            Image.fromarray(px, "L").save(root / name / f"{i}.png")
    ckpt = tmp_path / "m.npz"
    assert cli.main(["train", "--data", "folder", "--data-dir", str(root), "--image-size", "16,16", "--color", "gray",
                     "--epochs", "1", "--batch-size", "8", "--checkpoint", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "image folder" in out and "17 train / 1 validation / 2 test" in out and ckpt.exists()
    assert cli.main(["train", "--data", "folder", "--data-dir", str(root)]) == 2
    assert "--image-size" in capsys.readouterr().err


def test_nested_hidden_and_order(tmp_path):
    """Sub-folders of a class are read, hidden files/folders and other endings are not, and samples come
    sorted by path components (pathlib's order: 'a/z.png' before 'a.b/c.png'), the same on every load."""
    root = tmp_path / "data"
    files = {"UP.PNG": 10, "a/z.png": 20, "a.b/c.png": 30, "b.png": 40,
             ".hidden.png": 200, ".thumbs/t.png": 210, "a/.x.png": 220}
    for rel, value in files.items():
        (root / "k" / rel).parent.mkdir(parents=True, exist_ok=True)
        _solid((4, 4), value, "L").save(root / "k" / rel, format="PNG")
    (root / "k" / "notes.txt").write_text("ignored")
    (root / "k" / "link").symlink_to(root / "k" / "a", target_is_directory=True)  # not followed
    x, y, classes = load_image_folder(root, image_size=4, color="gray", normalize=False)
    assert classes == ["k"] and y.tolist() == [0, 0, 0, 0]
    assert x[:, 0, 0, 0].tolist() == [10, 20, 30, 40]
    again, _, _ = load_image_folder(root, image_size=4, color="gray", normalize=False)  # from the cache
    assert np.array_equal(again, x)


@pytest.mark.parametrize("orientation, resize", [(None, "crop"), (6, "crop"), (8, "stretch")])
def test_large_jpeg_draft_decoding_matches_the_full_decode(tmp_path, monkeypatch, orientation, resize):
    """A JPEG much larger than image_size decodes at a reduced DCT scale (Image.draft), keeping at least twice
    the pixels the resize needs: the pixels stay within a few levels of decoding it in full, EXIF included."""
    from corenet.data import decode_image
    from corenet.data import images as module

    yy, xx = np.mgrid[0:900, 0:1200]
    px = np.stack([xx * 255 // 1200, yy * 255 // 900, (xx // 100 % 2) * 200 + 20], -1).astype(np.uint8)
    path = tmp_path / "big.jpg"
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(px, "RGB").save(path, quality=92, exif=exif)
    with Image.open(path) as img:
        module._draft(img, (40, 60), resize)
        assert img.size[0] < 1200 and img.size[0] >= 2 * (60 if orientation != 8 else 40)  # reduced, not too far
    fast = decode_image(path, (40, 60), resize=resize, normalize=False)
    monkeypatch.setattr(module, "_draft", lambda *args: None)
    full = decode_image(path, (40, 60), resize=resize, normalize=False)
    diff = np.abs(fast.astype(int) - full.astype(int))
    assert fast.shape == full.shape == (3, 40, 60)
    assert diff.mean() < 1.0 and diff.max() < 12  # measured: mean 0.5, max 4 levels (of 255)
