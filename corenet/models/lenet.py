"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998, "Gradient-based learning applied to document
recognition")."""

from __future__ import annotations

from .. import layers as L
from ._common import build, image_input


def lenet5(num_classes=10, in_channels=1, input_size=28, activation="relu", pool="max", seed=0):
    """LeNet-5 for 28x28 digits: 61,706 parameters with 10 classes.

    ``conv 6@5x5 pad 2 -> pool 2 -> conv 16@5x5 -> pool 2 -> fc 120 -> fc 84 -> fc num_classes``,
    the ``lenet5_mnist_b64`` workload of BENCHMARKS.md (ReLU and max pooling, the modern reading).
    The 1998 paper used a scaled tanh squashing ``1.7159 tanh(2a/3)``, trainable subsampling
    (average pooling times a learned coefficient plus bias), a sparse C3 connection table and an
    RBF output layer on 32x32 inputs; ``activation="tanh", pool="avg"`` gives the closest plain
    variant (tanh, 2x2 average pooling), with the same parameter count.

    Parameters
    ----------
    num_classes : int
        Output units of the last layer.
    in_channels : int
        Image channels (1 for MNIST).
    input_size : int or (int, int)
        Image height and width; the first fully connected layer adapts to it (28 gives 16x5x5).
    activation : {"relu", "tanh"}
    pool : {"max", "avg"}
    seed : int
        Seed of the parameter initialisation.

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, output logits ``(N, num_classes)``.
    """
    acts = {"relu": L.ReLU, "tanh": L.Tanh}
    pools = {"max": L.MaxPool2d, "avg": L.AvgPool2d}
    if activation not in acts:
        raise ValueError(f"lenet5: activation must be 'relu' or 'tanh'. Received: activation={activation!r}")
    if pool not in pools:
        raise ValueError(f"lenet5: pool must be 'max' or 'avg'. Received: pool={pool!r}")
    act, pooling = acts[activation], pools[pool]
    x = inp = image_input(in_channels, input_size)
    x = pooling(2)(act()(L.Conv2d(6, 5, padding=2, name="conv1")(x)))  # (N, 6, 14, 14)
    x = pooling(2)(act()(L.Conv2d(16, 5, name="conv2")(x)))  # (N, 16, 5, 5)
    x = L.Flatten()(x)
    x = act()(L.Linear(120, name="fc1")(x))
    x = act()(L.Linear(84, name="fc2")(x))
    out = L.Linear(num_classes, name="fc3")(x)
    return build(inp, out, "lenet5", seed)
