"""Every example runs (smoke mode) and the ``corenet`` command works and fails cleanly."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corenet import cli

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))


def _run_example(name, args, monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(tmp_path)  # checkpoints and figures land in the temporary folder
    module.main(args)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_in_smoke_mode(name, monkeypatch, tmp_path, capsys):
    args = ["--smoke"]
    if name == "fashion_mnist_cnn":
        if not (SHARED / "fashion-mnist").exists():
            pytest.skip(f"shared Fashion-MNIST files not found at {SHARED / 'fashion-mnist'}")
        args += ["--data-dir", str(SHARED / "fashion-mnist")]
    if name == "visualize":
        pytest.importorskip("matplotlib", reason="the viz extra (matplotlib) is not installed")
    if name == "transfer_learning":
        pytest.importorskip("PIL", reason="the images extra (Pillow) is not installed")
    if name == "train_resnet_cifar":
        args = ["--smoke"]
    _run_example(name, args, monkeypatch, tmp_path)
    out = capsys.readouterr().out
    assert out.strip(), f"{name} printed nothing"
    if name == "visualize":
        assert {p.name for p in (tmp_path / "runs" / "viz").glob("*.png")} == {
            "filters.png", "feature_maps.png", "curves.png"}
    if name == "transfer_learning":  # pretrained weights written as a state_dict .npz, a generated folder read
        work = tmp_path / "runs" / "transfer"
        with np.load(work / "lenet5_digits_0_4.npz") as npz:
            assert {"conv1.weight", "fc3.bias"} <= set(npz.files) and npz["fc3.weight"].shape == (5, 84)
        assert len(list((work / "digits_5_9").glob("digit_*/*.png"))) == 5 * 12
        rows = [line.split()[0] for line in out.splitlines() if re.search(r"test \d+\.\d+%$", line)]
        assert rows == ["frozen", "+", "from"]  # the three ways, each with one test accuracy
    if name == "segmentation":  # both scores on the test digits, over the 11 per-pixel classes
        assert re.search(r"test pixel accuracy \d+\.\d+%, mean IoU [01]\.\d{3} over \d+ classes", out), out
    if name == "autoencoder":
        assert re.search(r"test reconstruction MSE 0\.\d{4} per pixel", out), out
    if name in ("segmentation", "autoencoder") and importlib.util.find_spec("matplotlib"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_every_example_has_a_docstring_saying_what_it_shows():
    for name in EXAMPLES:
        text = (ROOT / "examples" / f"{name}.py").read_text()
        assert text.startswith('"""'), f"examples/{name}.py has no docstring on top"


def test_demo_smoke_trains_and_saves_a_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "demo.npz"
    assert cli.main(["demo", "--smoke", "--epochs", "1", "--checkpoint", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "images/s" in out
    assert ckpt.exists()
    assert cli.main(["evaluate", "--checkpoint", str(ckpt), "--data", "bundled"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_summary_command_prints_the_table(capsys):
    assert cli.main(["summary", "--model", "lenet5", "--input", "1,28,28", "--num-classes", "10"]) == 0
    assert "61,706" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["summary", "--model", "nonet", "--input", "1,28,28"], "unknown model 'nonet'"),
    (["summary", "--model", "lenet5", "--input", "28x28"], "--input must be C,H,W"),
    (["train", "--data", "mnist", "--data-dir", "/nonexistent/mnist", "--epochs", "1"], "/nonexistent/mnist"),
    (["train", "--data", "imagenet"], "unknown data set 'imagenet'"),
    (["evaluate", "--checkpoint", "/nonexistent.npz"], "no checkpoint at /nonexistent.npz"),
    (["demo", "--backend", "tpu", "--smoke"], "unknown backend 'tpu'"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_python_dash_m_corenet_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "corenet", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "train", "summary", "evaluate"):
        assert command in out.stdout
