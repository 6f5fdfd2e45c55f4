"""A convolutional autoencoder on MNIST: strided convolutions down to a small code, transposed
convolutions back up to the image.

Shows: ``ConvTranspose2d`` with ``output_padding`` undoing the shapes of stride-2 convolutions
(28 -> 14 -> 7 -> 14 -> 28), training on the images themselves as targets (``"mse"`` on a sigmoid
output in [0, 1]), and the reconstruction error on the test digits, next to the error of always
answering the mean training image. Saves ``autoencoder.png`` (originals above their
reconstructions) when matplotlib is installed.

    python examples/autoencoder.py              # the MNIST subset bundled with corenet, offline
    python examples/autoencoder.py --smoke      # a few batches (CI)
"""

import argparse
import time

import numpy as np

from corenet import Input, Model, data, optim
from corenet import layers as L


def autoencoder(code_channels=8):
    """(1, 28, 28) -> (code_channels, 7, 7) -> (1, 28, 28); the code is 392 numbers for 784 pixels."""
    x = Input((1, 28, 28))
    h = L.ReLU()(L.Conv2d(16, 3, stride=2, padding=1, name="enc1")(x))                 # (16, 14, 14)
    h = L.ReLU()(L.Conv2d(32, 3, stride=2, padding=1, name="enc2")(h))                 # (32, 7, 7)
    code = L.Conv2d(code_channels, 1, name="code")(h)                                  # (8, 7, 7)
    h = L.ReLU()(L.ConvTranspose2d(32, 3, stride=2, padding=1, output_padding=1, name="dec1")(code))  # 14x14
    h = L.ReLU()(L.ConvTranspose2d(16, 3, stride=2, padding=1, output_padding=1, name="dec2")(h))     # 28x28
    out = L.Sigmoid()(L.Conv2d(1, 3, padding=1, name="out")(h))
    return Model(x, out, name="conv_autoencoder", seed=0)


def save_picture(path, originals, reconstructions, n=10):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no picture")
        return
    fig = Figure(figsize=(1.2 * n, 2.6))
    axes = fig.subplots(2, n)
    for j in range(n):
        for row, img in enumerate((originals[j, 0], reconstructions[j, 0])):
            axes[row, j].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("rebuilt")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    print(f"saved {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--picture", default="autoencoder.png")
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)

    (u_train, _), (u_test, _) = data.load_bundled(normalize=False)
    x_train, x_test = u_train.astype(np.float32) / 255, u_test.astype(np.float32) / 255  # targets in [0, 1]
    if args.smoke:
        x_train, x_test, args.epochs = x_train[:256], x_test[:64], 1

    model = autoencoder()
    model.summary()
    model.compile(optim.Adam(lr=2e-3), "mse", metrics=[])
    t0 = time.perf_counter()
    model.fit(x_train, x_train, batch_size=args.batch_size, epochs=args.epochs, seed=0)
    seconds = time.perf_counter() - t0

    rebuilt = model.predict(x_test, batch_size=256)
    mse = float(np.mean((rebuilt - x_test) ** 2))
    baseline = float(np.mean((x_train.mean(axis=0) - x_test) ** 2))
    print(f"trained {args.epochs} epoch(s) on {len(x_train)} digits in {seconds:.1f} s")
    print(f"test reconstruction MSE {mse:.4f} per pixel (PSNR {10 * np.log10(1 / mse):.1f} dB); "
          f"the mean training image scores {baseline:.4f}")
    save_picture(args.picture, x_test, rebuilt)


if __name__ == "__main__":
    main()
