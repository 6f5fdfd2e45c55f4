"""ZFNet (Zeiler and Fergus, 2013, "Visualizing and understanding convolutional networks"): AlexNet
with a 7x7/2 first layer, a stride-2 second layer and dense (single-tower) layers 3-5."""

from __future__ import annotations

from .. import layers as L
from ._common import build, image_input


def zfnet(num_classes=1000, in_channels=3, input_size=224, hidden=4096, dropout=0.5, seed=0):
    """ZFNet, the network of Fig. 3 of the paper, with the feature-map sizes it draws.

    Layer 1: conv 96@7x7/2, ReLU, max pool 3x3/2, contrast normalisation across feature maps.
    Layer 2: conv 256@5x5/2, ReLU, max pool 3x3/2, normalisation. Layers 3-5: conv 384, 384,
    256@3x3/1, ReLU (dense connections, where AlexNet splits layers 3-5 in two towers), max pool 3x3/2
    after layer 5. Layers 6-7: fully connected 4096 with ReLU and dropout 0.5. Layer 8: ``num_classes``.

    The figure's maps are 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6. Convolutions floor,
    ``out = floor((in + 2p - k) / s) + 1``; the paper's sizes come out with padding 1 on conv1
    (the only padding of the two strided convolutions), padding 1 on the 3x3 layers 3-5 (they keep
    13x13) and ceil-mode pooling (``ceil((in - 3) / 2) + 1``, PyTorch's rule):

    - conv1: ``floor((224 + 2 - 7) / 2) + 1 = 110``; pool1: ``ceil((110 - 3) / 2) + 1 = 55``
      (floor mode would give 54);
    - conv2: ``floor((55 - 5) / 2) + 1 = 26``; pool2: ``ceil((26 - 3) / 2) + 1 = 13`` (floor: 12);
    - conv3-5: ``13 + 2 - 3 + 1 = 13``; pool5: ``ceil((13 - 3) / 2) + 1 = 6``, so fc6 sees 256*6*6 = 9216.

    Normalisation is AlexNet's local response normalisation (the paper says only "contrast
    normalized across feature maps"): n=5, k=2, alpha=1e-4 undivided, beta=0.75 (``convention="paper"``).
    Initialisation as in section 3: weights ``N(0, 0.01^2)``, biases 0. Parameters with 1000 classes
    (weights + biases):

    ====== =========================== =============
    conv1  96 * 3 * 7 * 7 + 96               14,208
    conv2  256 * 96 * 5 * 5 + 256           614,656
    conv3  384 * 256 * 3 * 3 + 384          885,120
    conv4  384 * 384 * 3 * 3 + 384        1,327,488
    conv5  256 * 384 * 3 * 3 + 256          884,992
    fc6    4096 * 9216 + 4096            37,752,832
    fc7    4096 * 4096 + 4096            16,781,312
    fc8    1000 * 4096 + 1000             4,097,000
    total                                62,357,608
    ====== =========================== =============

    About 1.17 GMACs at 224x224 (conv 1.11 G, fc 0.06 G). Names are those of a torchvision-style
    ``features``/``classifier`` pair of ``nn.Sequential``: ``features_0, 4, 8, 10, 12`` (conv1-5),
    ``classifier_1, 4, 6`` (fc6-8).

    Parameters
    ----------
    num_classes, in_channels : int
    input_size : int or (int, int)
        224 in the paper; any size from 63 works (fc6's width follows the last map).
    hidden : int
        Width of fc6 and fc7 (4096 in the paper; smaller values make light variants).
    dropout : float
        Dropout before fc6 and fc7 (0.5 in the paper).
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    w, zero = {"name": "normal", "std": 0.01}, "zeros"

    def conv(h, out_channels, k, name, **kw):
        return L.ReLU()(L.Conv2d(out_channels, k, kernel_init=w, bias_init=zero, name=name, **kw)(h))

    def fc(h, out_features, name):
        return L.Linear(out_features, kernel_init=w, bias_init=zero, name=name)(h)

    def pool_norm(h):  # pooled, then normalised across feature maps (section 3, Fig. 3)
        h = L.MaxPool2d(3, 2, ceil_mode=True)(h)
        return L.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0, convention="paper")(h)

    x = inp = image_input(in_channels, input_size)
    x = pool_norm(conv(x, 96, 7, "features_0", stride=2, padding=1))  # 224 -> 110 -> 55
    x = pool_norm(conv(x, 256, 5, "features_4", stride=2))  # -> 26 -> 13
    x = conv(x, 384, 3, "features_8", padding=1)
    x = conv(x, 384, 3, "features_10", padding=1)
    x = conv(x, 256, 3, "features_12", padding=1)
    x = L.Flatten()(L.MaxPool2d(3, 2, ceil_mode=True)(x))  # (N, 256*6*6) at 224x224
    x = L.ReLU()(fc(L.Dropout(dropout)(x), hidden, "classifier_1"))
    x = L.ReLU()(fc(L.Dropout(dropout)(x), hidden, "classifier_4"))
    out = fc(x, num_classes, "classifier_6")
    return build(inp, out, "zfnet", seed)
