"""model.summary(): AlexNet's first layer against the lecture table, totals of LeNet-5, frozen
parameters, and the "Connected to" column for graphs."""

import numpy as np

from corenet import Input, Model, Sequential
from corenet import layers as L
from corenet.summary import format_bytes, format_count, layer_rows


def test_alexnet_first_layer_row():
    x = Input((3, 227, 227))
    m = Model(x, L.Conv2d(64, 11, stride=4, padding=2, name="conv1")(x), name="alexnet_stem")
    rows = {r["name"]: r for r in layer_rows(m)}
    conv = rows["conv1"]
    assert conv["shape"] == (64, 56, 56)
    assert conv["params"] == 23_296
    assert conv["macs"] == 72_855_552
    assert conv["bytes"] == 784 * 1024
    printed = []
    text = m.summary(print_fn=printed.append)
    assert printed == [text]
    line = next(ln for ln in text.splitlines() if ln.startswith("conv1 (Conv2d)"))
    for cell in ("64x56x56", "23,296", "72.9M", "784 KiB"):
        assert cell in line, (cell, line)
    assert "Total MACs: 72,855,552 (72.9M)" in text
    assert "Connected to" not in text  # a chain needs no connection column


def lenet5(**kw):
    return Sequential([L.Conv2d(6, 5, name="c1"), L.AvgPool2d(2), L.Conv2d(16, 5), L.AvgPool2d(2), L.Flatten(),
                       L.Linear(120), L.Linear(84), L.Linear(10)], input_shape=(1, 32, 32), name="lenet5", **kw)


def test_lenet5_totals_and_frozen_params():
    m = lenet5(seed=0)
    m.get_layer("c1").trainable = False
    text = m.summary(print_fn=None)
    assert sum(v.size for v in m.parameters().values()) == 61_706
    assert "Total params: 61,706 (241 KiB)" in text
    assert "Trainable params: 61,550" in text and "Frozen params: 156" in text
    assert "156 (frozen)" in text
    # MACs: 6*28*28*25 + 16*10*10*6*25 + 400*120 + 120*84 + 84*10
    assert "Total MACs: 416,520 (416.5K)" in text
    # activations (elements): 1024 + 4704 + 1176 + 1600 + 400 + 400 + 120 + 84 + 10 = 9518, float32
    assert f"Activation memory: {format_bytes(9518 * 4)}" in text and format_bytes(9518 * 4) == "37.2 KiB"
    rows = layer_rows(m.astype(np.float64))
    assert sum(r["bytes"] for r in rows) == 9518 * 8


def test_graph_summary_has_connected_to_and_counts_shared_layers_once():
    x = Input((4,))
    shared = L.Linear(4, name="shared")
    a = shared(x)
    b = shared(L.ReLU()(a))
    m = Model(x, L.Add(name="sum")([a, b]))
    text = m.summary(print_fn=None)
    assert "Connected to" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("sum (Add)"))
    assert line.rstrip().endswith("shared, shared")
    rows = layer_rows(m)
    assert [r["name"] for r in rows] == ["input", "shared", "relu", "shared[1]", "sum"]
    assert [r["params"] for r in rows] == [0, 20, 0, 0, 0] and [r["macs"] for r in rows] == [0, 16, 0, 16, 0]
    assert "Total params: 20 " in text


def test_formatters():
    assert format_bytes(802816) == "784 KiB" and format_bytes(100) == "100 B" and format_bytes(3 << 20) == "3 MiB"
    assert format_count(72_855_552) == "72.9M" and format_count(999) == "999" and format_count(2_500_000_000) == "2.5G"
