"""corenet.viz: learning curves, filters and feature maps as PNG files; History.plot; the error without matplotlib."""

import sys

import numpy as np
import pytest

from corenet import Sequential, data, models, optim, viz
from corenet import layers as L
from corenet.callbacks import History

pytest.importorskip("matplotlib", reason="the viz extra (matplotlib) is not installed")
Image = pytest.importorskip("PIL.Image")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) of a valid PNG file that holds more than one colour; fails otherwise."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, f"{path} is not a PNG file"
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 2, f"{path} is blank"
        return img.size


@pytest.fixture(scope="module")
def trained():
    """LeNet-5 after two short epochs on 192 bundled digits, with its History."""
    (x, y), _ = data.load_bundled(normalize=True)
    model = models.lenet5(seed=0)
    model.compile(optim.Adam(lr=2e-3), "cross_entropy", metrics=["accuracy"])
    history = model.fit(x[:192], y[:192], batch_size=64, epochs=2, seed=0, validation_split=0.25, verbose=0)
    return model, history, x[0]


def test_history_plot_writes_a_png_with_a_panel_per_quantity(trained, tmp_path):
    _, history, _ = trained
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    path = tmp_path / "sub" / "curves.png"  # missing folders are created
    assert history.plot(path) == str(path)
    w2, h2 = png_size(path)
    only_loss = {"loss": history.history["loss"], "val_loss": history.history["val_loss"], "lr": [1e-3, 1e-3]}
    w1, h1 = png_size(viz.plot_history(only_loss, tmp_path / "loss.png"))
    assert w2 > 1.6 * w1 and abs(h2 - h1) < 0.2 * h1  # loss + accuracy side by side, lr left out
    no_val = {"loss": [2.0, 1.0, 0.5], "auc": [0.7]}  # a metric logged once is left out, not an error
    assert png_size(viz.plot_history(no_val, tmp_path / "train_only.png"))[0] < 0.7 * w2


def test_history_plot_bad_input(tmp_path):
    with pytest.raises(ValueError, match="plot_history: the history holds no epochs"):
        History().plot(tmp_path / "x.png")
    with pytest.raises(TypeError, match="plot_history: expected a History.*received list"):
        viz.plot_history([1.0, 0.5], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_filters_gray_and_rgb(trained, tmp_path):
    model, _, _ = trained
    w, _ = png_size(viz.plot_filters(model, tmp_path / "f.png"))  # conv1: 6 gray 5x5 kernels in one row
    w3, _ = png_size(viz.plot_filters(model, tmp_path / "f3.png", max_filters=3))
    assert w3 < 0.7 * w
    rgb = Sequential([L.Conv2d(4, 3), L.ReLU(), L.Conv2d(5, 3)], input_shape=(3, 8, 8), seed=0)
    png_size(viz.plot_filters(rgb, tmp_path / "rgb.png"))
    png_size(viz.plot_filters(rgb, tmp_path / "mean.png", layer=rgb.layers[-1].name))  # 4 input channels
    dense = Sequential([L.Flatten(), L.Linear(3)], input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="plot_filters: model .* has no Conv2d layer"):
        viz.plot_filters(dense, tmp_path / "none.png")
    with pytest.raises(ValueError, match="plot_filters: layer 'fc1' holds no 4-D convolution weight"):
        viz.plot_filters(model, tmp_path / "none.png", layer="fc1")


def test_feature_maps_with_and_without_filters(trained, tmp_path):
    model, _, image = trained
    _, h = png_size(viz.plot_feature_maps(model, image, tmp_path / "maps.png"))
    _, h_filters = png_size(viz.plot_feature_maps(model, image, tmp_path / "both.png", filters=True))
    assert h_filters > h  # one more row: the conv1 kernels
    _, h_two = png_size(viz.plot_feature_maps(model, image, tmp_path / "two.png", layers=["conv1", "conv2"]))
    assert h_two < h  # input + 2 rows instead of input + 4
    with pytest.raises(ValueError, match=r"input shape \(C, H, W\) = \(1, 28, 28\); received shape \(28, 28\)"):
        viz.plot_feature_maps(model, image[0], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="layer 'fc1' gives samples of shape"):
        viz.plot_feature_maps(model, image, tmp_path / "bad.png", layers=["fc1"])


def test_feature_maps_rgb_many_channels(tmp_path):
    net = Sequential([L.Conv2d(20, 3, padding=1), L.ReLU(), L.MaxPool2d(2)], input_shape=(3, 12, 12), seed=0)
    image = np.random.default_rng(0).random((3, 12, 12), dtype=np.float32)
    w, _ = png_size(viz.plot_feature_maps(net, image, tmp_path / "rgb.png", max_maps=4))
    w_all, _ = png_size(viz.plot_feature_maps(net, image, tmp_path / "all.png"))
    assert w_all > 2 * w  # 16 columns (20 maps wrap) instead of 4


def test_missing_matplotlib_names_the_extra(trained, tmp_path, monkeypatch):
    model, history, image = trained
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert not viz.available()
    for call, what in [(lambda p: history.plot(p), "plot_history"), (lambda p: viz.plot_filters(model, p),
                       "plot_filters"), (lambda p: viz.plot_feature_maps(model, image, p), "plot_feature_maps")]:
        with pytest.raises(ImportError, match=rf"{what} needs matplotlib.*pip install 'corenet\[viz\]'"):
            call(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
