"""Look inside a trained CNN: first-layer filters, feature maps layer by layer, training curves.

Needs the ``viz`` extra (``pip install "corenet[viz]"``, matplotlib). Trains LeNet-5 briefly on
the bundled digits, then writes three PNG files to ``--out``:
``filters.png`` (the 6 learned 5x5 kernels of conv1), ``feature_maps.png`` (one digit through
every convolution and pooling layer) and ``curves.png`` (loss and accuracy per epoch).

    python examples/visualize.py --out runs/viz
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from corenet import Model, data, models, optim  # noqa: E402


def plot_filters(model, path):
    w = model.get_layer("conv1").params["weight"]  # (6, 1, 5, 5)
    fig, axes = plt.subplots(1, w.shape[0], figsize=(2 * w.shape[0], 2))
    for i, ax in enumerate(axes):
        ax.imshow(w[i, 0], cmap="gray")
        ax.set_title(f"filter {i}")
        ax.axis("off")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def plot_feature_maps(model, image, path):
    taps = [layer for layer in model.layers if type(layer).__name__ in ("Conv2d", "MaxPool2d", "AvgPool2d")]
    probe = Model(model.input, [layer.output for layer in taps], name="probe")
    maps = probe.predict(image[None], batch_size=1)
    rows = len(maps) + 1
    cols = max(m.shape[1] for m in maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image[0], cmap="gray")
    axes[0, 0].set_title("input")
    for r, (layer, m) in enumerate(zip(taps, maps), start=1):
        for c in range(m.shape[1]):
            axes[r, c].imshow(m[0, c], cmap="viridis")
        axes[r, 0].set_title(f"{layer.name} {m.shape[1]}x{m.shape[2]}x{m.shape[3]}", loc="left", fontsize=8)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def plot_curves(history, path):
    h = history.history
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, len(h["loss"]) + 1)
    a.plot(epochs, h["loss"], label="train")
    a.plot(epochs, h["val_loss"], label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    b.plot(epochs, h["accuracy"], label="train")
    b.plot(epochs, h["val_accuracy"], label="validation")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy")
    b.legend()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/viz")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    (x_train, y_train), (x_test, y_test) = data.load_bundled(normalize=True)
    n, epochs = (256, 2) if args.smoke else (len(x_train), args.epochs)
    model = models.lenet5(seed=0)
    model.compile(optim.Adam(lr=2e-3), "cross_entropy", metrics=["accuracy"])
    history = model.fit(x_train[:n], y_train[:n], batch_size=64, epochs=epochs, seed=0,
                        validation_data=(x_test[:500], y_test[:500]), verbose=0)
    paths = [os.path.join(args.out, f) for f in ("filters.png", "feature_maps.png", "curves.png")]
    plot_filters(model, paths[0])
    plot_feature_maps(model, x_test[0], paths[1])
    plot_curves(history, paths[2])
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
