"""Look inside a trained CNN: first-layer filters, feature maps layer by layer, learning curves.

Needs the ``viz`` extra (``pip install "corenet[viz]"``, matplotlib). Trains LeNet-5 briefly on
the bundled digits (10% of them held out for validation), then writes three PNG files to ``--out``
with ``corenet.viz``: ``filters.png`` (the 6 learned 5x5 kernels of conv1), ``feature_maps.png``
(one validation digit through the convolution and pooling layers) and ``curves.png`` (loss and
accuracy per epoch, training and validation). The test set is read once, at the end.

    python examples/visualize.py --out runs/viz

The same pictures from the command line: ``corenet train --plot curves.png ...`` and
``corenet visualize --checkpoint C --image digit.png --out maps.png``.
"""

import argparse
import os

from corenet import data, models, optim, viz


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/viz")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="a few batches, for CI")
    args = ap.parse_args(argv)

    (x, y), (x_test, y_test) = data.load_bundled(normalize=True)
    if args.smoke:
        x, y, args.epochs = x[:320], y[:320], 2
    (x_train, y_train), (x_val, y_val) = data.train_val_split(x, y, val_fraction=0.1, seed=0)
    model = models.lenet5(seed=0)
    model.compile(optim.Adam(lr=2e-3), "cross_entropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, seed=0,
                        validation_data=(x_val, y_val), verbose=0)

    paths = [os.path.join(args.out, f) for f in ("filters.png", "feature_maps.png", "curves.png")]
    viz.plot_filters(model, paths[0])
    viz.plot_feature_maps(model, x_val[0], paths[1])  # the input, conv1, pool, conv2, pool
    history.plot(paths[2])  # viz.plot_history(history, path)
    print("wrote " + ", ".join(paths))
    result = model.evaluate(x_test, y_test, batch_size=512)  # the test set, once
    print(f"validation accuracy {history.history['val_accuracy'][-1]:.2%}, test accuracy {result['accuracy']:.2%}")


if __name__ == "__main__":
    main()
