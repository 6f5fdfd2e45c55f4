"""Train a CIFAR ResNet (He et al., 2015, section 4.2) on CIFAR-10 with the paper's recipe.

Shows: a zoo model (``corenet.models.resnet20_cifar`` ... ``resnet110_cifar``, option-A or -B
shortcuts), the CIFAR-10 reader, the standard augmentation (random horizontal flips and 4-pixel
zero-pad-and-crop), SGD with momentum 0.9 and weight decay 1e-4 from learning rate 0.1, divided
by 10 at 50% and 75% of training (the paper's 32k/48k of 64k iterations at batch 128, i.e. epochs
82 and 123 of 164), and per-channel standardisation with the training-set statistics. ResNet-20
reaches about 8.75% test error that way (paper, Table 6); on 2 CPU cores an epoch takes minutes,
so try ``--epochs 10`` first (about 80-85% accuracy).

    python examples/train_resnet_cifar.py --data-dir ~/data/cifar10            # ResNet-20, 164 epochs
    python examples/train_resnet_cifar.py --data-dir ~/data/cifar10 --depth 56 --shortcut B --epochs 30
    python examples/train_resnet_cifar.py --smoke                               # random data, seconds (CI)

``--data-dir`` is the folder holding ``cifar-10-batches-py/`` (or ``cifar-10-batches-bin/``), as
unpacked from https://www.cs.toronto.edu/~kriz/cifar.html. Each epoch is validated on a stratified
``--validation-split`` of the training images (default 0.1: the paper's 45k/5k split, on which it
chose the schedule); the test set is read once, at the end. ``--validation-split 0`` trains on all
50k images, as for the paper's reported test errors.
"""

import argparse
import time

import numpy as np

from corenet import callbacks, data, models, optim


def lr_at(epoch, base_lr, epochs, warmup_epochs=0):
    """The step schedule: ``base_lr`` / 10 at 50% and 75% of ``epochs`` (0.1 * base_lr while warming up).

    The paper warms ResNet-110 up at 0.01 for about 400 iterations (one epoch) before going to 0.1.
    """
    if epoch < warmup_epochs:
        return 0.1 * base_lr
    milestones = (max(1, epochs // 2), max(1, (3 * epochs) // 4))
    return base_lr * 0.1 ** sum(epoch >= m for m in milestones)


def load(args):
    if args.smoke:  # random images and labels: checks the pipeline end to end in seconds
        rng = np.random.default_rng(0)
        x = rng.standard_normal((96, 3, 32, 32), dtype=np.float32)
        y = rng.integers(0, 10, 96)
        return (x[:64], y[:64]), (x[64:], y[64:])
    x_train, y_train = data.load_cifar10(args.data_dir, split="train", normalize=True)
    x_test, y_test = data.load_cifar10(args.data_dir, split="test", normalize=True)
    return (x_train, y_train), (x_test, y_test)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", help="folder with the CIFAR-10 files (python or binary version)")
    ap.add_argument("--depth", type=int, default=20, choices=[20, 32, 44, 56, 110])
    ap.add_argument("--shortcut", default="A", choices=["A", "B"], help="A: zero-padded identity, B: projection")
    ap.add_argument("--epochs", type=int, default=164)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--warmup-epochs", type=int, default=None, help="epochs at lr/10 first (default: 1 for depth 110)")
    ap.add_argument("--validation-split", type=float, default=0.1, help="share of the training images that "
                    "validate each epoch (default 0.1; 0: train on all)")
    ap.add_argument("--checkpoint", default=None, help="resumable checkpoint written after every epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="2 steps on random data (CI)")
    args = ap.parse_args(argv)
    if not args.smoke and not args.data_dir:
        ap.error("--data-dir is required (or --smoke for a run on random data)")
    if args.smoke:
        args.epochs, args.batch_size = 1, 32
    warmup = args.warmup_epochs if args.warmup_epochs is not None else int(args.depth == 110)

    (x_train, y_train), (x_test, y_test) = load(args)
    model = models.resnet_cifar(args.depth, num_classes=10, shortcut=args.shortcut, seed=args.seed)
    model.summary()
    model.compile(optim.SGD(lr=args.lr, momentum=0.9, weight_decay=1e-4), "cross_entropy", metrics=["accuracy"])
    augment = data.Compose([data.RandomHorizontalFlip(), data.RandomCrop(padding=4, mode="zero")])
    schedule = callbacks.LearningRateScheduler(lambda epoch: lr_at(epoch, args.lr, args.epochs, warmup))
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed, augment=augment,
              validation_split=args.validation_split, callbacks=[schedule], resume=args.checkpoint)
    seconds = time.perf_counter() - t0
    result = model.evaluate(x_test, y_test, batch_size=256)  # the test set, once
    print(f"ResNet-{args.depth} ({args.shortcut}): test accuracy {result['accuracy']:.4f} "
          f"(error {100 * (1 - result['accuracy']):.2f}%), {seconds:.1f} s of training")
    return result


if __name__ == "__main__":
    main()
