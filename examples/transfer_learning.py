"""Transfer learning on an image folder: pretrained zoo weights from a PyTorch ``.npz``, frozen features, new head.

The lecture's recipe, end to end and offline:

1. Weights: ``--weights W.npz``, a PyTorch ``state_dict`` saved as numpy arrays
   (``np.savez("w.npz", **{k: v.numpy() for k, v in net.state_dict().items()})``, e.g. torchvision's
   resnet18), or, without it, a LeNet-5 "pretrained" here on the bundled digits 0-4 and saved the same way.
2. Data: ``--data-dir ROOT`` (one sub-folder per class), or, without it, a folder of PNG files written from
   the bundled digits 5-9. ``load_image_folder`` reads it; a stratified test set is held out and the rest
   is split into training and validation sets.
3. a. feature extraction: the zoo model with the imported weights (``models.load_torchvision``), cut
      where its classifier begins (the first Linear layer), frozen, and a new linear head trained on top;
   b. fine-tuning: every layer trainable again, the pretrained ones at a 10x lower rate (``lr_mult``);
   c. the same network trained from scratch on the same small set.

Choices are made on the validation set; the test set is read once, at the end. With little data, (a)
and (b) beat (c): that gap is the point of transfer learning.

    python examples/transfer_learning.py                       # generated folder, offline
    python examples/transfer_learning.py --data-dir photos --model resnet18 --weights resnet18.npz \\
        --image-size 224,224 --color rgb
"""

import argparse
import os

import numpy as np

from corenet import Model, data, models, optim
from corenet import layers as L


def pretrain_on_digits(path, digits, n, epochs):
    """A LeNet-5 trained on the bundled ``digits``, its weights saved as a PyTorch-style state_dict ``.npz``."""
    (x, y), _ = data.load_bundled(normalize=True)
    keep = np.flatnonzero(np.isin(y, digits))[:n]
    base = models.lenet5(num_classes=len(digits), seed=0)
    base.compile(optim.Adam(lr=2e-3), "cross_entropy", metrics=["accuracy"])
    history = base.fit(x[keep], y[keep] - min(digits), batch_size=64, epochs=epochs, seed=0,
                       validation_split=0.1, verbose=0)
    np.savez(path, **base.state_dict())  # the names and layouts torch.nn.Module.state_dict() uses
    print(f"pretrained lenet5 on {len(keep)} digits {digits[0]}-{digits[-1]} (validation accuracy "
          f"{history.history['val_accuracy'][-1]:.2%}); weights in {path}")


def write_digit_folder(root, digits, per_class):
    """ROOT/digit_<d>/<i>.png: ``per_class`` bundled images of each digit, as a user's photo folder would be."""
    from PIL import Image

    (x, y), _ = data.load_bundled(normalize=False)
    for d in digits:
        os.makedirs(os.path.join(root, f"digit_{d}"), exist_ok=True)
        for i, k in enumerate(np.flatnonzero(y == d)[:per_class]):
            Image.fromarray(np.asarray(x[k, 0], dtype=np.uint8), "L").save(os.path.join(root, f"digit_{d}", f"{i}.png"))
    return root


def build_pretrained(name, weights, channels, size):
    """The zoo model ``name`` with ``weights`` loaded; its class count is read from the last 2-D weight."""
    with np.load(weights) as npz:
        num_classes = [npz[k].shape[0] for k in npz.files if npz[k].ndim == 2][-1]
    kw = {"num_classes": num_classes, "in_channels": channels, "seed": 0}
    model = models.get_model(name, input_size=size, **kw)
    models.load_torchvision(model, weights)  # checks every name and shape
    return model


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, batch_size=256).argmax(axis=1) == y))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", help="image folder, one sub-folder per class (default: generated digits 5-9)")
    ap.add_argument("--weights", help="PyTorch state_dict .npz for --model (default: pretrain lenet5 here)")
    ap.add_argument("--model", default="lenet5", help="zoo model the weights belong to")
    ap.add_argument("--image-size", default="28,28", help="H,W the images are resized to")
    ap.add_argument("--color", default="gray", choices=("gray", "rgb"))
    ap.add_argument("--per-class", type=int, default=100, help="generated folder: images per class")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--work", default="runs/transfer", help="where generated files go")
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.image_size.split(","))
    epochs, per_class, base_n = (1, 12, 256) if args.smoke else (args.epochs, args.per_class, None)
    os.makedirs(args.work, exist_ok=True)

    weights = args.weights
    if weights is None:
        if args.model != "lenet5" or args.color != "gray":
            ap.error("without --weights the pretrained model is a gray lenet5: pass --weights for other models")
        weights = os.path.join(args.work, "lenet5_digits_0_4.npz")
        pretrain_on_digits(weights, [0, 1, 2, 3, 4], base_n, max(1, epochs // 2))
    root = args.data_dir or write_digit_folder(os.path.join(args.work, "digits_5_9"), [5, 6, 7, 8, 9], per_class)

    x, y, names = data.load_image_folder(root, size, color=args.color, cache=args.data_dir is not None)
    (x, y), (x_test, y_test) = data.train_val_split(x, y, val_fraction=0.25, seed=0)  # the test set: kept aside
    (x_train, y_train), (x_val, y_val) = data.train_val_split(x, y, val_fraction=0.2, seed=1)
    print(f"{root}: {len(names)} classes {names}; {len(x_train)} train / {len(x_val)} validation / "
          f"{len(x_test)} test images")
    fit = dict(batch_size=32, epochs=epochs, seed=0, validation_data=(x_val, y_val), verbose=0)

    # a. frozen pretrained features + a new head, cut where the classifier (the first Linear layer) begins
    base = build_pretrained(args.model, weights, x.shape[1], size)
    classifier = next(layer for layer in base.layers if isinstance(layer, L.Linear))
    features = base.cut(classifier.input)  # lenet5: the 16x5x5 convolution features, flattened
    for layer in features.layers:
        layer.trainable = False
    head = L.Linear(len(names), name="new_head")(features.output)
    transfer = Model(features.input, head, name="transfer", seed=1)
    frozen = {k: v.copy() for k, v in features.parameters().items()}
    transfer.compile(optim.Adam(lr=args.lr), "cross_entropy", metrics=["accuracy"])
    h_frozen = transfer.fit(x_train, y_train, **fit)
    assert all((v == frozen[k]).all() for k, v in features.parameters().items()), "frozen weights moved"
    after_a = {k: v.copy() for k, v in transfer.state_dict().items()}  # (b) goes on from here

    # b. fine-tuning: the pretrained layers learn again, 10x slower than the head
    for layer in features.layers:
        layer.trainable, layer.lr_mult = True, 0.1
    transfer.compile(optim.Adam(lr=args.lr), "cross_entropy", metrics=["accuracy"])
    h_tuned = transfer.fit(x_train, y_train, **fit)

    # c. the same architecture from scratch on the same small set
    scratch = models.get_model(args.model, num_classes=len(names), in_channels=x.shape[1], input_size=size, seed=2)
    scratch.compile(optim.Adam(lr=args.lr), "cross_entropy", metrics=["accuracy"])
    h_scratch = scratch.fit(x_train, y_train, **fit)

    # the test set, once, at the end
    tuned_test = accuracy(transfer, x_test, y_test)
    transfer.load_state_dict(after_a)
    rows = [("frozen features + new head", h_frozen, accuracy(transfer, x_test, y_test)),
            ("+ fine-tuned at lr/10", h_tuned, tuned_test),
            ("from scratch", h_scratch, accuracy(scratch, x_test, y_test))]
    print(f"{len(x_train)} training images; accuracy on validation (per epoch) and on the test set (once):")
    for label, history, test in rows:
        val = ", ".join(f"{v:.0%}" for v in history.history["val_accuracy"])
        print(f"  {label:28s} validation {val}   test {test:.2%}")

if __name__ == "__main__":
    main()
