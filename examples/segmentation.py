"""Semantic segmentation on MNIST: a small U-Net labels every pixel as background or as its digit.

Shows: an encoder-decoder with skip concatenations (``Concat``), learned upsampling
(``ConvTranspose2d``) and fixed upsampling (``Upsample``, bilinear), the built-in cross-entropy on
per-pixel ``(N, 11, H, W)`` logits against ``(N, H, W)`` labels (as PyTorch's, the mean over every
pixel), ``fit`` reporting the pixel accuracy, and the two usual segmentation scores, pixel accuracy
and mean intersection-over-union, on the test digits. The per-pixel labels come
from the digit labels: 0 where the pixel is background, ``1 + digit`` where it is ink (pixel > 127),
so 11 classes. Saves ``segmentation.png`` (inputs, truth, predictions) when matplotlib is installed.

    python examples/segmentation.py              # the MNIST subset bundled with corenet, offline
    python examples/segmentation.py --smoke      # a few batches (CI)
"""

import argparse
import time

import numpy as np

from corenet import Input, Model, data, losses, optim
from corenet import layers as L

N_CLASSES = 11  # background + 10 digits


def pixel_labels(images_u8, digits):
    """``(N, H, W)`` int64: 0 on background, ``1 + digit`` where the pixel is ink."""
    ink = images_u8[:, 0] > 127
    return np.where(ink, digits[:, None, None].astype(np.int64) + 1, 0)


def conv_block(x, channels, name):
    for i in (1, 2):
        x = L.Conv2d(channels, 3, padding=1, bias=False, name=f"{name}_conv{i}")(x)
        x = L.ReLU()(L.BatchNorm2d(name=f"{name}_bn{i}")(x))
    return x


def unet(width=16):
    """28x28 -> 14x14 -> 7x7 and back: ConvTranspose2d for the first way up, Upsample for the second."""
    x = Input((1, 28, 28))
    s1 = conv_block(x, width, "enc1")                                   # (16, 28, 28)
    s2 = conv_block(L.MaxPool2d(2)(s1), 2 * width, "enc2")              # (32, 14, 14)
    b = conv_block(L.MaxPool2d(2)(s2), 4 * width, "mid")                # (64, 7, 7)
    u2 = L.ConvTranspose2d(2 * width, 2, stride=2, name="up2")(b)       # (32, 14, 14), learned
    d2 = conv_block(L.Concat()([u2, s2]), 2 * width, "dec2")
    u1 = L.Upsample(scale_factor=2, mode="bilinear", name="up1")(d2)    # (32, 28, 28), fixed
    d1 = conv_block(L.Concat()([u1, s1]), width, "dec1")
    return Model(x, L.Conv2d(N_CLASSES, 1, name="head")(d1), name="unet_mnist", seed=0)


def scores(pred, truth, n_classes=N_CLASSES):
    """``(pixel accuracy, mean IoU, IoU per class)``; the mean is over the classes that occur in
    the truth or the prediction (``TP / (TP + FP + FN)`` each)."""
    conf = np.bincount(truth.ravel() * n_classes + pred.ravel(), minlength=n_classes**2).reshape(n_classes, -1)
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return tp.sum() / conf.sum(), float(np.nanmean(iou)), iou


def save_picture(path, images, truth, pred, n=8):
    """Rows: inputs, truth, predictions (one colour per class, background black)."""
    try:
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no picture")
        return
    cmap = ListedColormap(["black", *[f"C{i}" for i in range(10)]])
    fig = Figure(figsize=(1.4 * n, 4.4))
    axes = fig.subplots(3, n)
    for j in range(n):
        for row, (img, kw) in enumerate([(images[j, 0], dict(cmap="gray")),
                                         (truth[j], dict(cmap=cmap, vmin=0, vmax=N_CLASSES - 1)),
                                         (pred[j], dict(cmap=cmap, vmin=0, vmax=N_CLASSES - 1))]):
            axes[row, j].imshow(img, interpolation="nearest", **kw)
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
    for row, title in enumerate(["input", "truth", "predicted"]):
        axes[row, 0].set_ylabel(title)
    fig.suptitle("colour = digit class, black = background")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    print(f"saved {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--picture", default="segmentation.png")
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)

    (x_train, d_train), (x_test, d_test) = data.load_bundled(normalize=True)
    (u_train, _), (u_test, _) = data.load_bundled(normalize=False)
    y_train, y_test = pixel_labels(u_train, d_train), pixel_labels(u_test, d_test)
    if args.smoke:
        x_train, y_train, x_test, y_test, args.epochs = x_train[:128], y_train[:128], x_test[:64], y_test[:64], 1

    model = unet(width=8 if args.smoke else 16)
    model.summary()
    model.compile(optim.Adam(lr=3e-3), losses.CrossEntropy(), metrics=["accuracy"])  # per pixel
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, seed=0)
    seconds = time.perf_counter() - t0

    pred = np.concatenate([model.predict(x_test[i:i + 256]).argmax(axis=1) for i in range(0, len(x_test), 256)])
    acc, miou, iou = scores(pred, y_test)
    print(f"trained {args.epochs} epoch(s) on {len(x_train)} digits in {seconds:.1f} s")
    print(f"test pixel accuracy {acc:.2%}, mean IoU {miou:.3f} over {np.count_nonzero(~np.isnan(iou))} classes")
    print("IoU per class: " + ", ".join(f"{'bg' if c == 0 else c - 1}: {v:.2f}" for c, v in enumerate(iou)
                                        if not np.isnan(v)))
    save_picture(args.picture, x_test, y_test, pred)


if __name__ == "__main__":
    main()
