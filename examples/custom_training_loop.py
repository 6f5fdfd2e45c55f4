"""A custom training loop with the low-level API: forward, loss, backward, optimizer step.

Shows what ``fit`` does under the hood, for when you need control: gradient accumulation over
two micro-batches, a per-step learning-rate warm-up, and reading gradients by parameter name.

    python examples/custom_training_loop.py
"""

import argparse

import numpy as np

from corenet import data, losses, models, optim


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--smoke", action="store_true", help="a few steps, for CI")
    args = ap.parse_args(argv)
    steps = 5 if args.smoke else args.steps

    (x_train, y_train), (x_test, y_test) = data.load_bundled(normalize=True)
    model = models.lenet5(seed=0)
    loss_fn = losses.CrossEntropy()
    opt = optim.SGD(lr=0.05, momentum=0.9, nesterov=True)
    params = model.trainable_parameters()  # live arrays: the optimizer updates them in place
    rng = np.random.default_rng(0)
    half = args.batch_size // 2

    for step in range(steps):
        idx = rng.choice(len(x_train), args.batch_size, replace=False)
        model.zero_grad()
        total = 0.0
        for part in (idx[:half], idx[half:]):  # two micro-batches, gradients accumulate
            out = model.forward(x_train[part], training=True)
            loss, grad = loss_fn(out, y_train[part])
            model.backward(grad / 2, need_input_grads=False)
            total += float(loss) / 2
        opt.lr = 0.05 * min(1.0, (step + 1) / 50)  # linear warm-up over the first 50 steps
        opt.step(params, model.gradients())
        if step % 50 == 0 or step == steps - 1:
            norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in model.gradients().values()))
            print(f"step {step:4d}  loss {total:.4f}  lr {opt.lr:.4f}  grad norm {norm:.3f}")

    pred = model.predict(x_test, batch_size=512).argmax(axis=1)
    print(f"test accuracy {np.mean(pred == y_test):.2%}")


if __name__ == "__main__":
    main()
