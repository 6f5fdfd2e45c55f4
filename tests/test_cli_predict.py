"""The input pipeline stored in a checkpoint (model.preprocess) and `corenet predict`."""

import json
import re

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
