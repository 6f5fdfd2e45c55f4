"""The ``corenet`` command: ``demo``, ``train``, ``summary``, ``evaluate``, ``export``, ``predict``, ``visualize``.

Errors a user can fix (unknown model, missing data, bad arguments) print one line and exit
with status 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
import time

from .images import UserError, cmd_predict, cmd_visualize, configure, image_size_arg, load_folder, need_matplotlib


# ------------------------------------------------------------------------------ helpers
def _build_model(name: str, input_shape, num_classes: int):
    from corenet import models

    if name not in models.available_models():
        raise UserError(f"unknown model {name!r}; available: {', '.join(models.available_models())}")
    kw = {"num_classes": num_classes, "in_channels": input_shape[0]}
    if "input_size" in inspect.signature(models._REGISTRY[name]).parameters:  # the zoo's keyword: (H, W)
        kw["input_size"] = tuple(input_shape[1:])
    try:
        return models.get_model(name, **kw)
    except (ValueError, TypeError) as exc:  # e.g. an input too small for the architecture
        raise UserError(f"{name} cannot be built for input {tuple(input_shape)}: {exc}") from None


def _load_dataset(name: str, data_dir: str | None, image_size=None, color="rgb"):
    """((x_train, y_train), (x_test, y_test)) as float32 NCHW, a note on where it came from, and the
    input pipeline to store in the checkpoint (``model.preprocess``; None for the built-in data sets)."""
    from corenet import data

    loaders = {
        "mnist": data.load_mnist,
        "fashion-mnist": data.load_fashion_mnist,
        "cifar10": data.load_cifar10,
    }
    if name == "bundled":
        return data.load_bundled(normalize=True), "the MNIST subset bundled with corenet", None
    if name == "folder":
        return load_folder(data_dir, image_size, color)
    if name not in loaders:
        raise UserError(f"unknown data set {name!r}; expected one of bundled, folder, {', '.join(loaders)}")
    root = data_dir or os.path.join(data.default_cache_dir(), name)
    load = loaders[name]
    try:
        train = load(root, split="train", normalize=True)
    except FileNotFoundError as exc:
        raise UserError(f"{name} training data not found: {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        test = load(root, split="test", normalize=True)
        note = f"{name} from {root}"
    except FileNotFoundError:
        # e.g. a partial copy with only the training files: hold out its last 1,000 images
        (x, y), k = train, 1000
        train, test = (x[:-k], y[:-k]), (x[-k:], y[-k:])
        note = f"{name} from {root} (no test split found: the last {k} training images are held out)"
    return (train, test), note, None


def _say(*args, **kwargs) -> None:
    """``print`` on one process only: rank 0 under ``mpiexec`` (corenet.distributed), else always."""
    from corenet import distributed

    if distributed.is_main():
        print(*args, **kwargs)


def _save(model, path: str) -> None:
    """Save from rank 0 only (every rank holds the same weights after a distributed fit)."""
    from corenet import distributed

    if distributed.is_main():
        model.save(path)
        print(f"saved checkpoint to {path}")


def _fit_count(n: int, validation_split: float) -> int:
    """How many of ``n`` samples ``fit(validation_split=...)`` trains on."""
    return int(math.ceil(n * (1.0 - validation_split))) if validation_split else n


def _plot(history, path) -> None:
    """``--plot``: the learning curves as a picture (rank 0 only)."""
    from corenet import distributed, viz

    if path and distributed.is_main():
        try:
            viz.plot_history(history, path)
        except (ImportError, OSError) as exc:
            raise UserError(f"--plot {path}: {exc}") from None
        print(f"wrote learning curves to {path}")


def _report(model, x_test, y_test, seconds: float, n_images: int) -> float:
    result = model.evaluate(x_test, y_test, batch_size=256, verbose=0)  # every rank: sharded, reduced
    acc = result.get("accuracy", float("nan"))
    _say(f"test accuracy {acc:.2%}  test loss {result['loss']:.4f}  "
         f"training time {seconds:.1f} s  ({n_images / seconds:,.0f} images/s)")
    return acc


# ------------------------------------------------------------------------------ commands
def cmd_demo(args) -> int:
    """Train LeNet-5 on the bundled MNIST subset, report test accuracy, save a checkpoint."""
    import corenet
    from corenet import callbacks, models, optim, schedules
    from corenet.data.augment import RandomShift

    configure(args)
    (x_train, y_train), (x_test, y_test) = corenet.data.load_bundled(normalize=True)
    if args.smoke:
        x_train, y_train, x_test, y_test = x_train[:512], y_train[:512], x_test[:256], y_test[:256]
    n_fit = _fit_count(len(x_train), 0.1)
    _say(f"corenet {corenet.__version__} demo: LeNet-5 on {n_fit:,} bundled MNIST digits, "
         f"{len(x_train) - n_fit:,} more validate, {len(x_test):,} test digits read once at the end "
         f"(backend {corenet.get_backend()}, {corenet.get_num_threads()} threads)")
    model = models.lenet5(seed=args.seed)
    model.compile(optim.Adam(lr=args.lr), "cross_entropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    # Random 2-pixel shifts and a decaying rate: 98% on the bundled test digits (97% without them).
    decay = callbacks.LearningRateScheduler(schedules.ExponentialLR(gamma=0.75))
    # validation: 10% of the training digits (stratified, drawn from the seed); the test set is read once, below
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
              validation_split=0.1, transform=RandomShift(2), callbacks=[decay],
              verbose=1 if sys.stdout.isatty() else 2)
    seconds = time.perf_counter() - t0
    _report(model, x_test, y_test, seconds, args.epochs * n_fit)
    _save(model, args.checkpoint)
    return 0


def cmd_train(args) -> int:
    import corenet
    from corenet import optim

    configure(args)
    (train, test), note, preprocess = _load_dataset(args.data, args.data_dir, args.image_size, args.color)
    x_train, y_train = train
    num_classes = int(max(y_train.max(), test[1].max())) + 1
    if args.resume:
        if not os.path.exists(args.resume):
            raise UserError(f"--resume: no checkpoint at {args.resume}")
        model = corenet.load(args.resume)
    else:
        model = _build_model(args.model, x_train.shape[1:], num_classes)
        opts = {"sgd": lambda lr: optim.SGD(lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4),
                "adam": lambda lr: optim.Adam(lr=lr), "rmsprop": lambda lr: optim.RMSProp(lr=lr),
                "adagrad": lambda lr: optim.AdaGrad(lr=lr)}
        if args.optimizer not in opts:
            raise UserError(f"unknown optimizer {args.optimizer!r}; expected one of {', '.join(opts)}")
        model.compile(opts[args.optimizer](args.lr), "cross_entropy", metrics=["accuracy"])
    transform = None
    if args.augment:
        from corenet.data import augment as A

        transform = A.Compose([A.RandomShift(2)] if x_train.shape[1] == 1
                              else [A.RandomHorizontalFlip(), A.RandomCrop(4)])
    n_fit = _fit_count(len(x_train), args.validation_split)
    if not 0.0 <= args.validation_split < 1.0 or (args.validation_split and not 0 < n_fit < len(x_train)):
        raise UserError(f"--validation-split must be in [0, 1) and leave samples on both sides of "
                        f"{len(x_train)} training samples, received {args.validation_split}")
    _say(f"training {args.model} on {note}: {n_fit:,} train / {len(x_train) - n_fit:,} validation / "
         f"{len(test[0]):,} test")
    if args.plot:
        need_matplotlib("--plot")  # before training, not after it
    t0 = time.perf_counter()
    # validation: a stratified share of the training data (fit's seed); the test set is read once, at the end
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                        validation_split=args.validation_split, transform=transform, resume=args.resume,
                        verbose=1 if sys.stdout.isatty() else 2)
    _report(model, *test, time.perf_counter() - t0, args.epochs * n_fit)
    _plot(history, args.plot)
    # saved with the checkpoint (None unless --data folder): `corenet predict` decodes images the same way
    model.preprocess = preprocess
    if args.checkpoint:
        _save(model, args.checkpoint)
    return 0


def cmd_summary(args) -> int:
    try:
        shape = tuple(int(v) for v in args.input.split(","))
    except ValueError:
        raise UserError(f"--input must be C,H,W (e.g. 3,224,224), received {args.input!r}") from None
    if len(shape) != 3:
        raise UserError(f"--input must be C,H,W (e.g. 3,224,224), received {args.input!r}")
    model = _build_model(args.model, shape, args.num_classes)
    model.summary()
    return 0


def cmd_evaluate(args) -> int:
    import corenet

    configure(args)
    if not os.path.exists(args.checkpoint):
        raise UserError(f"no checkpoint at {args.checkpoint}")
    try:
        model = corenet.load(args.checkpoint)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    (_, (x_test, y_test)), note, _ = _load_dataset(args.data, args.data_dir)
    result = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    print(f"{args.checkpoint} on {note}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    return 0


def cmd_export(args) -> int:
    """Write a checkpoint's model as an ONNX graph (eval mode)."""
    import corenet

    if not os.path.exists(args.checkpoint):
        raise UserError(f"no checkpoint at {args.checkpoint}")
    try:
        model = corenet.load(args.checkpoint, compile=False)
        corenet.export_onnx(model, args.onnx, opset=args.opset)
    except (ValueError, ImportError) as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {args.onnx} (opset {args.opset}) from {args.checkpoint}")
    return 0


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corenet", description="A small, fast CNN training engine.")
    sub = p.add_subparsers(dest="command", required=True)

    def runtime(sp):
        sp.add_argument("--backend", help="auto, numba or cython (default: CORENET_BACKEND or auto)")
        sp.add_argument("--threads", type=int, help="threads for kernels and BLAS (default: all cores)")
        sp.add_argument("--seed", type=int, default=0)

    d = sub.add_parser("demo", help="train LeNet-5 on the bundled MNIST subset (offline)")
    runtime(d)
    d.add_argument("--epochs", type=int, default=8)
    d.add_argument("--batch-size", type=int, default=64)
    d.add_argument("--lr", type=float, default=3e-3)
    d.add_argument("--checkpoint", default="corenet-demo.npz")
    d.add_argument("--smoke", action="store_true", help="a few hundred images, for tests")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train a zoo model on a data set")
    runtime(t)
    t.add_argument("--model", default="lenet5")
    t.add_argument("--data", default="bundled", help="bundled, mnist, fashion-mnist, cifar10 or folder")
    t.add_argument("--data-dir", help="directory with the data set's official files (folder: class sub-folders, "
                   "or train/ and test/ holding them)")
    t.add_argument("--image-size", type=image_size_arg, help="H,W: --data folder resizes every image to this")
    t.add_argument("--color", choices=("rgb", "gray"), default="rgb", help="--data folder: 3 or 1 channels")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--optimizer", default="adam", help="sgd (momentum 0.9, Nesterov), adam, rmsprop, adagrad")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--augment", action="store_true", help="shifts (grey) or flips + crops (colour)")
    t.add_argument("--validation-split", type=float, default=0.1, help="share of the training data held out "
                   "for validation each epoch (stratified; default 0.1; 0: none); the test set is read once, "
                   "at the end")
    t.add_argument("--checkpoint", help="save the trained model here")
    t.add_argument("--resume", help="continue from this checkpoint")
    t.add_argument("--plot", metavar="PNG", help="write the learning curves (loss, accuracy; training and "
                   "validation) here (needs the viz extra)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("summary", help="print a zoo model's layer table")
    s.add_argument("--model", required=True)
    s.add_argument("--input", required=True, help="C,H,W")
    s.add_argument("--num-classes", type=int, default=1000)
    s.set_defaults(func=cmd_summary)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a data set's test split")
    runtime(e)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", default="bundled")
    e.add_argument("--data-dir")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="write a checkpoint's model as ONNX (needs the onnx extra)")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--onnx", required=True, help="path of the .onnx file to write")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset, 13 to 18 (default 17)")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("predict", help="top-k classes of images, decoded with the checkpoint's input pipeline")
    runtime(r)
    r.add_argument("--checkpoint", required=True)
    r.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files; folders are walked")
    r.add_argument("--top", type=int, default=1, help="how many classes to print per image (default 1)")
    r.add_argument("--image-size", type=image_size_arg, help="H,W: overrides (or, without one, replaces) the "
                   "checkpoint's pipeline")
    r.add_argument("--color", choices=("rgb", "gray"), help="overrides the checkpoint's colour mode")
    r.set_defaults(func=cmd_predict)

    v = sub.add_parser("visualize", help="a checkpoint's first filters and an image's feature maps as a picture "
                       "(needs the viz extra)")
    runtime(v)
    v.add_argument("--checkpoint", required=True)
    v.add_argument("--image", required=True, help="one image file, decoded with the checkpoint's input pipeline")
    v.add_argument("--out", default="maps.png", help="picture to write (default maps.png)")
    v.add_argument("--layers", type=int, default=4, help="how many convolution/pooling layers to draw (default 4)")
    v.add_argument("--image-size", type=image_size_arg, help="H,W: overrides (or, without one, replaces) the "
                   "checkpoint's pipeline")
    v.add_argument("--color", choices=("rgb", "gray"), help="overrides the checkpoint's colour mode")
    v.set_defaults(func=cmd_visualize)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"corenet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
