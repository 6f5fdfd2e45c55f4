"""The ``corenet`` command on image files: ``train --data folder``, ``predict``, ``visualize``.

Also the pieces every subcommand shares (``UserError``, ``configure``, ``image_size_arg``): they sit here
so that ``main.py`` (the parser and the other commands) imports this module and never the reverse.
"""

from __future__ import annotations

import argparse
import os


class UserError(Exception):
    """A mistake in the command line or the environment: one line, exit code 2."""


def configure(args) -> None:
    """``--backend`` and ``--threads``, for every command that runs a model."""
    import corenet

    try:
        if getattr(args, "backend", None):
            corenet.set_backend(args.backend)
        if getattr(args, "threads", None):
            corenet.set_num_threads(args.threads)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UserError(str(exc)) from None


def load_folder(root: str | None, image_size, color: str):
    """``--data folder``: ROOT/train and ROOT/test holding class folders, or ROOT holding class folders
    (then a stratified 10% is held out as the test set, seed 0). Images are centre-cropped ("crop") and
    normalised to [0, 1]; the returned pipeline says so, with the class names."""
    from corenet import data

    if not root:
        raise UserError("--data folder needs --data-dir ROOT (class sub-folders, or train/ and test/ holding them)")
    if image_size is None:
        raise UserError("--data folder needs --image-size H,W")
    try:
        if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
            x, y, names = data.load_image_folder(os.path.join(root, "train"), image_size, color=color)
            x_test, y_test, test_names = data.load_image_folder(os.path.join(root, "test"), image_size, color=color)
            if test_names != names:
                raise UserError(f"{root}: train/ and test/ hold different classes: {names} vs {test_names}")
            return (((x, y), (x_test, y_test)), f"image folders {root}/train and {root}/test ({len(names)} classes)",
                    pipeline(names, image_size, color))
        x, y, names = data.load_image_folder(root, image_size, color=color)
        train, test = data.train_val_split(x, y, val_fraction=0.1, seed=0)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise UserError(str(exc)) from None
    return ((train, test), f"image folder {root} ({len(names)} classes, a stratified 10% held out as test)",
            pipeline(names, image_size, color))


def pipeline(names, image_size, color) -> dict:
    """The ``preprocess`` entry of a checkpoint trained on ``--data folder`` (see ``corenet.io``)."""
    return {"class_names": list(names), "image_size": [int(v) for v in image_size], "color": color,
            "resize": "crop", "normalize": True}


def image_size_arg(text: str):
    """argparse type of ``--image-size``: ``"H,W"`` -> ``(H, W)``."""
    try:
        h, w = (int(v) for v in text.split(","))
        if h > 0 and w > 0:
            return h, w
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected H,W (two positive ints), got {text!r}")


def need_matplotlib(option: str) -> None:
    """Fail before any work when a picture is asked for and matplotlib is missing."""
    from corenet import viz

    if not viz.available():
        raise UserError(f"{option} needs matplotlib: pip install 'corenet[viz]' (or pip install matplotlib)")


def image_files(paths) -> list[str]:
    """The image files named on the command line; a folder is walked recursively (hidden entries and
    other files skipped). Sorted, without duplicates."""
    from corenet.data.images import IMAGE_EXTENSIONS

    found = set()
    for arg in paths:
        if os.path.isdir(arg):
            for folder, dirs, names in os.walk(arg):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.update(os.path.join(folder, n) for n in names
                             if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(arg):
            found.add(arg)
        else:
            raise UserError(f"no such image file or folder: {arg}")
    if not found:
        raise UserError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {', '.join(paths)}")
    return sorted(found)


def load_for_images(args):
    """The checkpoint's model (not compiled) and its input pipeline, with ``--image-size``/``--color`` applied."""
    import corenet

    if not os.path.exists(args.checkpoint):
        raise UserError(f"no checkpoint at {args.checkpoint}")
    try:
        model = corenet.load(args.checkpoint, compile=False)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    pipe = dict(model.preprocess or {})
    if not pipe and (args.image_size is None or args.color is None):
        raise UserError(f"{args.checkpoint} holds no input pipeline (it was not trained with --data folder): "
                        "pass --image-size H,W and --color rgb|gray")
    if args.image_size is not None:
        pipe["image_size"] = list(args.image_size)
    if args.color is not None:
        pipe["color"] = args.color
    return model, pipe


def decode(files, pipe):
    """(N, C, H, W) float32: the files decoded as the checkpoint's model was trained (``decode_image``)."""
    import numpy as np

    from corenet.data.images import decode_image

    try:
        return np.stack([decode_image(f, pipe["image_size"], pipe["color"], pipe.get("resize", "crop"),
                                      pipe.get("normalize", True)) for f in files]).astype(np.float32)
    except (ValueError, ImportError) as exc:
        raise UserError(str(exc)) from None


def cmd_predict(args) -> int:
    """Top-k class names and softmax probabilities per image, decoded with the checkpoint's pipeline."""
    import numpy as np

    configure(args)
    if args.top < 1:
        raise UserError(f"--top must be >= 1, received {args.top}")
    model, pipe = load_for_images(args)
    files = image_files(args.images)
    x = decode(files, pipe)
    try:
        logits = np.asarray(model.predict(x, batch_size=64), dtype=np.float64)
    except ValueError as exc:  # e.g. --image-size not the size the model was built for
        raise UserError(str(exc)) from None
    if logits.ndim != 2:
        raise UserError(f"{args.checkpoint}: the model's output has shape {logits.shape[1:]}, not class scores")
    names = pipe.get("class_names") or [str(i) for i in range(logits.shape[1])]
    if len(names) != logits.shape[1]:
        raise UserError(f"{args.checkpoint}: the model scores {logits.shape[1]} classes but the pipeline names "
                        f"{len(names)}")
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    k = min(args.top, probs.shape[1])
    for path, p in zip(files, probs):
        top = np.argsort(-p, kind="stable")[:k]
        print(f"{path}: " + ", ".join(f"{names[i]} {p[i]:.4f}" for i in top))
    return 0


def cmd_visualize(args) -> int:
    """The first convolution's filters and one image's feature maps through the first layers, as a picture."""
    from corenet import viz

    configure(args)
    need_matplotlib("visualize")
    if args.layers < 1:
        raise UserError(f"--layers must be >= 1, received {args.layers}")
    model, pipe = load_for_images(args)
    if not os.path.isfile(args.image):
        raise UserError(f"no such image file: {args.image}")
    x = decode([args.image], pipe)
    try:
        viz.plot_feature_maps(model, x[0], args.out, max_layers=args.layers, filters=True)
    except ValueError as exc:  # e.g. --image-size not the model's input size, or no convolution to draw
        raise UserError(str(exc)) from None
    print(f"wrote filters and feature maps of {args.image} to {args.out}")
    return 0
