"""The input pipeline stored in a checkpoint (model.preprocess) and `corenet predict`."""

import contextlib
import io
import json
import re
import sys

import numpy as np
import pytest

import corenet
from corenet import cli

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CORENET_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A gray 2-class folder (dark / light) and a checkpoint trained on it for one epoch through the CLI."""
    tmp = tmp_path_factory.mktemp("predict")
    mp = pytest.MonkeyPatch()
    mp.setenv("CORENET_CACHE", str(tmp / "cache"))
    rng = np.random.default_rng(0)
    root = tmp / "shapes"
    for name, value in (("dark", 30), ("light", 220)):
        (root / name).mkdir(parents=True)
        for i in range(10):
            px = np.clip(value + rng.normal(0, 10, (20, 24)), 0, 255).astype(np.uint8)
            Image.fromarray(px, "L").save(root / name / f"{i}.png")
    ckpt = tmp / "m.npz"
    assert cli.main(["train", "--data", "folder", "--data-dir", str(root), "--image-size", "16,16", "--color",
                     "gray", "--epochs", "1", "--batch-size", "8", "--checkpoint", str(ckpt)]) == 0
    mp.undo()
    return root, ckpt


def _lines(out):
    """path -> [(class, probability), ...] from predict's output."""
    result = {}
    for line in out.strip().splitlines():
        path, rest = line.rsplit(": ", 1)
        result[path] = [(m[0], float(m[1])) for m in re.findall(r"(\w+) ([0-9.]+)", rest)]
    return result


def test_checkpoint_carries_the_pipeline(trained):
    _, ckpt = trained
    model = corenet.load(ckpt)
    assert model.preprocess == {"class_names": ["dark", "light"], "image_size": [16, 16], "color": "gray",
                                "resize": "crop", "normalize": True}


def test_predict_file_and_folder(trained, capsys):
    root, ckpt = trained
    capsys.readouterr()
    one = root / "light" / "3.png"
    assert cli.main(["predict", "--checkpoint", str(ckpt), str(one), "--top", "2"]) == 0
    got = _lines(capsys.readouterr().out)
    assert list(got) == [str(one)]
    assert sorted(c for c, _ in got[str(one)]) == ["dark", "light"]
    assert sum(p for _, p in got[str(one)]) == pytest.approx(1.0, abs=1e-3)

    (root / "light" / "notes.txt").write_text("not an image")
    assert cli.main(["predict", "--checkpoint", str(ckpt), str(root), "--top", "3"]) == 0
    got = _lines(capsys.readouterr().out)
    assert list(got) == sorted(got) and len(got) == 20  # recursive, sorted by path, text file skipped
    for pairs in got.values():
        assert len(pairs) == 2 and {c for c, _ in pairs} == {"dark", "light"}  # --top clipped to the classes
        assert sum(p for _, p in pairs) == pytest.approx(1.0, abs=1e-3)
        assert pairs[0][1] >= pairs[1][1]
    assert cli.main(["predict", "--checkpoint", str(ckpt), str(one)]) == 0
    assert len(_lines(capsys.readouterr().out)[str(one)]) == 1  # default: the top class


def _rewrite_meta(src, dst, change):
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["__meta__"]))
    change(meta)
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)


@pytest.mark.parametrize("field, value", [("class_names", ["dark", 3]), ("image_size", [16, "16"]),
                                          ("color", "cmyk"), ("resize", None), ("normalize", 1)])
def test_tampered_preprocess_is_a_value_error_naming_the_field(trained, tmp_path, field, value):
    _, ckpt = trained
    bad = tmp_path / "bad.npz"
    _rewrite_meta(ckpt, bad, lambda m: m["preprocess"].__setitem__(field, value))
    with pytest.raises(ValueError, match=rf"bad\.npz.*preprocess field '{field}'"):
        corenet.load(bad)


def test_tampered_preprocess_keys_and_cli_error(trained, tmp_path, capsys):
    root, ckpt = trained
    bad = tmp_path / "bad.npz"
    _rewrite_meta(ckpt, bad, lambda m: m["preprocess"].update(path="/etc/passwd"))
    with pytest.raises(ValueError, match=r"bad\.npz.*unknown \['path'\]"):
        corenet.load(bad)
    _rewrite_meta(ckpt, bad, lambda m: m.__setitem__("preprocess", ["dark"]))
    with pytest.raises(ValueError, match=r"bad\.npz.*preprocess must be a dict"):
        corenet.load(bad)
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(bad), str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "preprocess" in err


def test_python_api_save_load_symmetric(tmp_path):
    model = corenet.models.lenet5(seed=0)
    assert corenet.load(_saved(model, tmp_path / "plain.npz")).preprocess is None
    pipe = {"class_names": [str(i) for i in range(10)], "image_size": [28, 28], "color": "gray",
            "resize": "stretch", "normalize": True}
    model.preprocess = pipe
    assert corenet.load(_saved(model, tmp_path / "p.npz")).preprocess == pipe
    model.preprocess = dict(pipe, color="grey")
    with pytest.raises(ValueError, match="preprocess field 'color'"):
        model.save(tmp_path / "x.npz")


def _saved(model, path):
    model.save(path)
    return path


def test_checkpoint_without_pipeline(trained, tmp_path, capsys):
    root, ckpt = trained
    plain = tmp_path / "plain.npz"
    _rewrite_meta(ckpt, plain, lambda m: m.pop("preprocess"))
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(plain), str(root / "dark" / "0.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--image-size" in err and "--color" in err
    assert cli.main(["predict", "--checkpoint", str(plain), str(root / "dark" / "0.png"),
                     "--image-size", "16,16", "--color", "gray"]) == 0
    pairs = _lines(capsys.readouterr().out)[str(root / "dark" / "0.png")]
    assert len(pairs) == 1 and pairs[0][0] in ("0", "1")  # no class names: indices
    assert cli.main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "missing.png")]) == 2
    assert "no such image" in capsys.readouterr().err


# ------------------------------------------------------------------------------ drawn shapes, --plot, visualize
SHAPES = ("circle", "cross", "square")


def _draw_shape(kind, rng, size=24):
    from PIL import ImageDraw

    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 60, 3)))
    draw = ImageDraw.Draw(img)
    a, b = int(rng.integers(2, 6)), int(rng.integers(size - 6, size - 2))
    colour = tuple(int(v) for v in rng.integers(160, 256, 3))
    if kind == "circle":
        draw.ellipse((a, a, b, b), outline=colour, width=3)
    elif kind == "square":
        draw.rectangle((a, a, b, b), outline=colour, width=3)
    else:
        draw.line((a, a, b, b), fill=colour, width=3)
        draw.line((a, b, b, a), fill=colour, width=3)
    return img


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Three classes of drawn shapes, PNG and JPEG, in train/ and test/; trained two epochs with --plot."""
    pytest.importorskip("matplotlib", reason="the viz extra (matplotlib) is not installed")
    tmp = tmp_path_factory.mktemp("shapes")
    mp = pytest.MonkeyPatch()
    mp.setenv("CORENET_CACHE", str(tmp / "cache"))
    rng = np.random.default_rng(1)
    root = tmp / "data"
    for split, n in (("train", 12), ("test", 3)):
        for kind in SHAPES:
            (root / split / kind).mkdir(parents=True)
            for i in range(n):
                ext = "png" if i % 2 else "jpg"
                _draw_shape(kind, rng).save(root / split / kind / f"{i}.{ext}")
    ckpt, curves = tmp / "shapes.npz", tmp / "curves.png"
    argv = ["train", "--data", "folder", "--data-dir", str(root), "--image-size", "16,16", "--epochs", "2",
            "--batch-size", "8", "--lr", "3e-3", "--validation-split", "0.25", "--checkpoint", str(ckpt),
            "--plot", str(curves)]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):  # a module fixture has no capsys
        assert cli.main(argv) == 0
    mp.undo()
    return root, ckpt, curves, buffer.getvalue()


def _assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and min(img.size) > 50


def test_train_two_epochs_with_plot_then_predict_names(shapes, capsys):
    root, ckpt, curves, out = shapes
    assert "27 train / 9 validation / 9 test" in out  # validation from train/, test/ read once at the end
    assert "test accuracy" in out and f"wrote learning curves to {curves}" in out
    _assert_png(curves)
    assert corenet.load(ckpt).preprocess["class_names"] == list(SHAPES)
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(ckpt), str(root / "test"), "--top", "3"]) == 0
    got = _lines(capsys.readouterr().out)
    assert len(got) == 9 and {p.rsplit(".", 1)[1] for p in got} == {"png", "jpg"}
    for pairs in got.values():
        assert sorted(c for c, _ in pairs) == list(SHAPES)


def test_visualize_writes_a_png(shapes, tmp_path, capsys):
    root, ckpt, _, _ = shapes
    out = tmp_path / "maps.png"
    image = root / "test" / "cross" / "0.jpg"
    assert cli.main(["visualize", "--checkpoint", str(ckpt), "--image", str(image), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    _assert_png(out)
    with Image.open(out) as img:
        tall = img.size[1]
    assert cli.main(["visualize", "--checkpoint", str(ckpt), "--image", str(image), "--out", str(out),
                     "--layers", "1"]) == 0
    with Image.open(out) as img:
        assert img.size[1] < tall  # fewer layers, fewer rows


@pytest.mark.parametrize("extra, message", [
    (["--image", "missing.png"], "no such image file: missing.png"),
    (["--image-size", "20,20"], "input shape"),  # the model was built for 16x16
    (["--layers", "0"], "--layers must be >= 1, received 0"),
])
def test_visualize_user_errors(shapes, tmp_path, extra, message, capsys):
    root, ckpt, _, _ = shapes
    argv = ["visualize", "--checkpoint", str(ckpt), "--image", str(root / "test" / "circle" / "0.jpg"),
            "--out", str(tmp_path / "m.png")] + extra
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "m.png").exists()


def test_plot_and_visualize_without_matplotlib_fail_before_work(trained, tmp_path, monkeypatch, capsys):
    root, ckpt = trained
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    capsys.readouterr()
    assert cli.main(["train", "--data", "folder", "--data-dir", str(root), "--image-size", "16,16", "--color",
                     "gray", "--epochs", "1", "--plot", str(tmp_path / "c.png")]) == 2
    captured = capsys.readouterr()
    assert "--plot needs matplotlib: pip install 'corenet[viz]'" in captured.err and "Epoch" not in captured.out
    assert cli.main(["visualize", "--checkpoint", str(ckpt), "--image", str(root / "dark" / "0.png"),
                     "--out", str(tmp_path / "m.png")]) == 2
    assert "visualize needs matplotlib" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_train_validation_split_bounds(trained, capsys):
    root, _ = trained
    for bad in ("1.0", "-0.1", "0.01"):  # 0.01 of 18 images holds out none
        assert cli.main(["train", "--data", "folder", "--data-dir", str(root), "--image-size", "16,16",
                         "--color", "gray", "--epochs", "1", "--validation-split", bad]) == 2
        assert "--validation-split must be in [0, 1)" in capsys.readouterr().err
