"""The model zoo: exact parameter counts, MACs, output shapes, training steps, names and seeds.

ImageNet-size models allocate their full weights, so each is built once: its summary gives the
parameter and MAC totals and a batch-1 inference forward at 224x224 checks the output shape
(a forward at natural size costs less than a second build at a reduced size). Training is checked
on light variants (narrow widths, small inputs, 256-wide heads) of every family.
"""

import re

import numpy as np
import pytest

from corenet import models, optim
from corenet.layers import ChannelPad

slow = pytest.mark.slow


def _totals(model):
    text = model.summary(print_fn=None)
    params = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    macs = int(re.search(r"Total MACs: ([\d,]+)", text).group(1).replace(",", ""))
    return params, macs


# name, kwargs, exact parameter count (1000 classes unless the model is a CIFAR/MNIST one),
# MACs figure of the literature (None: no claim), natural input (C, H, W) of the forward check
# (None: counts only, the family's forward is checked on a sibling)
COUNTS = [
    ("lenet5", {}, 61_706, None, (1, 28, 28)),
    ("alexnet", {}, 61_100_840, 0.71e9, (3, 224, 224)),
    ("alexnet", {"variant": "paper"}, 60_965_224, None, (3, 227, 227)),
    ("vgg11", {}, 132_863_336, None, (3, 224, 224)),
    ("vgg16", {}, 138_357_544, 15.5e9, (3, 224, 224)),
    pytest.param("vgg13", {}, 133_047_848, None, None, marks=slow),
    pytest.param("vgg19", {}, 143_667_240, None, None, marks=slow),
    ("googlenet", {}, 13_004_888, 1.5e9, (3, 224, 224)),
    ("googlenet", {"aux_logits": False}, 6_624_904, 1.5e9, (3, 224, 224)),
    ("googlenet", {"variant": "paper", "aux_logits": False}, 6_998_552, None, (3, 224, 224)),
    ("resnet18", {}, 11_689_512, None, (3, 224, 224)),
    ("resnet50", {}, 25_557_032, 4.1e9, (3, 224, 224)),
    ("resnet152", {}, 60_192_808, None, (3, 224, 224)),
    pytest.param("resnet34", {}, 21_797_672, None, None, marks=slow),
    pytest.param("resnet101", {}, 44_549_160, None, None, marks=slow),
    ("resnet20_cifar", {"shortcut": "B"}, 272_474, None, (3, 32, 32)),
    ("resnet20_cifar", {"shortcut": "A"}, 269_722, None, (3, 32, 32)),
    ("resnet110_cifar", {"shortcut": "A"}, 1_727_962, None, (3, 32, 32)),
    ("densenet121", {}, 7_978_856, None, (3, 224, 224)),
    pytest.param("densenet169", {}, 14_149_480, None, None, marks=slow),
    pytest.param("densenet201", {}, 20_013_928, None, None, marks=slow),
    ("densenet_bc_cifar", {"depth": 100, "growth_rate": 12}, 769_162, None, (3, 32, 32)),
    ("se_resnet50", {}, 28_088_024, 4.1e9, (3, 224, 224)),
    ("mobilenet_v1", {}, 4_231_976, 0.569e9, (3, 224, 224)),
]


@pytest.mark.parametrize("name, kw, n_params, macs, shape", COUNTS)
def test_parameter_count_macs_and_output_shape(name, kw, n_params, macs, shape):
    model = models.get_model(name, **kw)
    params, total_macs = _totals(model)
    assert params == n_params
    assert sum(p.size for p in model.parameters().values()) == n_params
    if macs is not None:
        assert abs(total_macs - macs) <= 0.02 * macs, f"{name}: {total_macs / 1e9:.3f} GMACs"
    if shape is None:
        return
    x = np.random.default_rng(0).standard_normal((1, *shape), dtype=np.float32)
    out = model.forward(x)
    classes = 10 if n_params < 2_000_000 else 1000
    if kw.get("aux_logits", True) and name == "googlenet":
        assert [o.shape for o in out] == [(1, classes)] * 3
    else:
        assert out.shape == (1, classes) and out.dtype == np.float32
        assert np.isfinite(out).all()


def test_googlenet_aux_heads_add_exactly_their_parameters():
    # the auxiliary heads are extra outputs; without them the parameters are a subset, same names
    with_aux = models.googlenet(num_classes=10, input_size=64)
    without = models.googlenet(num_classes=10, input_size=64, aux_logits=False)
    extra = set(with_aux.parameters()) - set(without.parameters())
    assert set(without.parameters()) <= set(with_aux.parameters())
    assert {k.split("_")[0] for k in extra} == {"aux1", "aux2"}
    assert models.AUX_LOSS_WEIGHT == 0.3


# --------------------------------------------------------------------------------- training steps
LIGHT = [
    ("lenet5", {}, (1, 28, 28)),
    ("lenet5", {"activation": "tanh", "pool": "avg"}, (1, 28, 28)),
    ("alexnet", {"input_size": 64, "hidden": 64, "dropout": 0.0}, (3, 64, 64)),
    ("alexnet", {"variant": "paper", "input_size": 99, "hidden": 64, "dropout": 0.0}, (3, 99, 99)),
    ("vgg11", {"input_size": 32, "hidden": 32, "dropout": 0.0, "batch_norm": True}, (3, 32, 32)),
    ("googlenet", {"input_size": 32}, (3, 32, 32)),
    ("googlenet", {"input_size": 64, "variant": "paper", "aux_logits": False, "dropout": 0.0, "lr": 1e-3}, (3, 64, 64)),
    ("resnet18", {"input_size": 64, "width": 8}, (3, 64, 64)),
    ("resnet50", {"input_size": 64, "width": 8}, (3, 64, 64)),
    ("resnet20_cifar", {"shortcut": "A"}, (3, 32, 32)),
    ("resnet20_cifar", {"shortcut": "B"}, (3, 32, 32)),
    ("densenet121", {"input_size": 64, "growth_rate": 4, "num_init_features": 8}, (3, 64, 64)),
    ("densenet_bc_cifar", {"depth": 10, "growth_rate": 6}, (3, 32, 32)),
    ("se_resnet50", {"input_size": 64, "width": 8}, (3, 64, 64)),
    ("mobilenet_v1", {"input_size": 64, "width": 0.25}, (3, 64, 64)),
]


@pytest.mark.parametrize("name, kw, shape", LIGHT, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k, _ in LIGHT])
def test_one_training_step_reduces_the_loss_on_its_batch(name, kw, shape):
    kw = dict(kw)
    lr = kw.pop("lr", 0.01)  # 22 layers without batch norm (GoogLeNet's paper variant) need a smaller step
    model = models.get_model(name, num_classes=10, seed=1, **kw)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, *shape), dtype=np.float32)
    y = rng.integers(0, 10, 4)
    n_out = len(model.outputs)
    model.compile(optim.SGD(lr=lr, momentum=0.9), "cross_entropy",
                  loss_weights=[1.0] + [models.AUX_LOSS_WEIGHT] * (n_out - 1) if n_out > 1 else None)
    before = model.train_on_batch(x, y)  # the loss before the step
    after = model.train_on_batch(x, y)  # ... and after it, on the same batch
    assert np.isfinite(before) and after < before, (before, after)


@pytest.mark.parametrize("name, kw", [("resnet20_cifar", {"shortcut": "A"}),
                                      ("densenet_bc_cifar", {"depth": 10, "growth_rate": 8})])
def test_cifar_models_learn_a_small_problem(name, kw):
    # 32 images of 4 classes told apart by a colour offset: 8 steps must cut the loss sharply
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 8)
    x = rng.standard_normal((32, 3, 32, 32), dtype=np.float32) * 0.5
    x[np.arange(32), y % 3] += np.where(y < 3, 1.0, -1.0)[:, None, None].astype(np.float32)
    model = models.get_model(name, num_classes=4, seed=0, **kw)
    model.compile(optim.SGD(lr=0.05, momentum=0.9, weight_decay=1e-4), "cross_entropy")
    hist = model.fit(x, y, batch_size=16, epochs=4, seed=0, verbose=0).history
    assert hist["loss"][-1] < 0.5 * hist["loss"][0], hist["loss"]


# --------------------------------------------------------------------------------- structure
def test_registry():
    names = models.available_models()
    assert {"lenet5", "alexnet", "vgg16", "googlenet", "resnet50", "resnet20_cifar", "resnet110_cifar",
            "densenet121", "densenet_bc_cifar", "se_resnet50", "mobilenet_v1"} <= set(names)
    assert names == sorted(names)
    with pytest.raises(ValueError, match="unknown model 'resnet9'.*available"):
        models.get_model("resnet9")


@pytest.mark.parametrize("call, match", [
    (lambda: models.alexnet(variant="caffe"), "variant must be"),
    (lambda: models.googlenet(variant="v3"), "variant must be"),
    (lambda: models.resnet_cifar(depth=21), "6n\\+2"),
    (lambda: models.resnet20_cifar(shortcut="C"), "shortcut must be"),
    (lambda: models.densenet_bc_cifar(depth=99), "6n\\+4"),
    (lambda: models.lenet5(activation="swish"), "activation must be"),
    (lambda: models.mobilenet_v1(width=0), "width must be"),
])
def test_bad_arguments_say_what_was_received(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_seed_makes_weights_reproducible():
    a, b, c = (models.resnet20_cifar(seed=s) for s in (5, 5, 6))
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(v, b.parameters()[k])
    assert any(not np.array_equal(v, c.parameters()[k]) for k, v in a.parameters().items())


def test_torchvision_names():
    m = models.resnet18(num_classes=10, input_size=32, width=8)
    names = set(m.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer2_0_downsample_0.weight", "layer4_1_bn2.bias", "fc.bias"} <= names
    mapping = models.torchvision_name_map(m)
    assert mapping["layer2.0.downsample.0"] == "layer2_0_downsample_0" and mapping["fc"] == "fc"
    assert len(mapping) == len({k.rpartition(".")[0] for k in names})


@pytest.mark.parametrize("build", [lambda: models.resnet20_cifar(width=4, shortcut="A"),
                                   lambda: models.googlenet(num_classes=5, input_size=32)])
def test_save_and_load_round_trip(build, tmp_path):
    # the architecture is rebuilt from its config (ChannelPad included) and gives the same outputs
    from corenet import io

    model = build()
    model.save(tmp_path / "m.npz", include_optimizer=False)
    again = io.load(tmp_path / "m.npz")
    x = np.random.default_rng(0).standard_normal((2, *model.inputs[0].shape), dtype=np.float32)
    for a, b in zip(np.atleast_1d(model.forward(x)), np.atleast_1d(again.forward(x))):
        np.testing.assert_array_equal(a, b)


def test_channel_pad_forward_backward():
    layer = ChannelPad(2, 3)
    x = np.arange(2 * 4 * 3 * 3, dtype=np.float64).reshape(2, 4, 3, 3)
    layer.build(x.shape[1:])
    y = layer.forward(x)
    assert y.shape == (2, 9, 3, 3) and y.dtype == x.dtype
    np.testing.assert_array_equal(y[:, 2:6], x)
    assert not y[:, :2].any() and not y[:, 6:].any()
    gy = np.random.default_rng(0).standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(gy), gy[:, 2:6])
    with pytest.raises(ValueError, match="before and after"):
        ChannelPad(-1, 0)


def test_option_a_shortcut_is_parameter_free_subsampling():
    a = models.resnet20_cifar(shortcut="A")
    b = models.resnet20_cifar(shortcut="B")
    only_b = set(b.parameters()) - set(a.parameters())
    assert only_b == {f"layer{s}_0_downsample_{i}.{p}" for s in (2, 3) for i, p in
                      ((0, "weight"), (1, "weight"), (1, "bias"))}
    assert set(a.parameters()) <= set(b.parameters())
