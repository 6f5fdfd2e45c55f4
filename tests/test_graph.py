"""Graph and Model: DAG gradients vs finite differences (residual, concatenation, fan-out, several
inputs/outputs, weight sharing), build-time errors naming the layer, naming, cutting and reusing,
state_dict and config round trips, Sequential, and an optional cross-check against PyTorch."""

import json

import numpy as np
import pytest
from gradcheck import check_model

import corenet
from corenet import Input, Model, Sequential
from corenet import layers as L


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny float64 shapes: one kernel thread (parallel launches cost milliseconds on a busy 2-core box)."""
    previous = corenet.get_num_threads()
    corenet.set_num_threads(1)
    yield
    corenet.set_num_threads(previous)


def inception_residual_net(seed=0):
    """Two inputs, residual Add, Inception Concat, SE Multiply, a fan-out tensor and two outputs."""
    x = Input((3, 6, 6), name="image")
    aux = Input((4,), name="meta")
    h = L.ReLU()(L.BatchNorm2d()(L.Conv2d(4, 3, padding=1, bias=False)(x)))
    r = L.Add(name="residual")([h, L.Conv2d(4, 1)(x)])           # x fans out to three consumers
    b1 = L.Conv2d(2, 1)(r)
    b2 = L.Conv2d(3, 3, padding="same")(L.ReLU()(L.Conv2d(2, 1)(r)))
    b3 = L.MaxPool2d(3, 1, padding=1)(x)
    z = L.Concat(name="mixed")([b1, b2, b3])                      # 2 + 3 + 3 channels
    gate = L.Sigmoid()(L.Linear(8)(aux))
    z = L.Multiply()([z, gate])                                   # (N, 8, 6, 6) * (N, 8)
    pooled = L.Flatten()(L.GlobalAvgPool2d()(z))
    main = L.Linear(5, name="main")(pooled)
    side = L.Linear(2, name="side")(L.Tanh()(pooled))             # pooled fans out to both heads
    return Model([x, aux], [main, side], seed=seed)


def test_dag_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    m = inception_residual_net()
    check_model(m, [rng.standard_normal((3, 3, 6, 6)), rng.standard_normal((3, 4))], max_elems=25)


def test_intermediate_output_and_shared_layer_gradients():
    x = Input((5,))
    shared = L.Linear(5)
    h1 = shared(x)
    h2 = shared(L.Tanh()(h1))                                     # the same weights applied twice
    out = L.Linear(3)(h2)
    m = Model(x, [h1, out], seed=1)                               # h1 is an output and feeds on
    check_model(m, np.random.default_rng(1).standard_normal((4, 5)))
    assert len(m.layers) == 3 and m.layers[0] is shared


def test_dropout_and_eval_mode_graph_gradients():
    x = Input((2, 5, 5))
    h = L.Dropout(0.3)(L.ReLU()(L.Conv2d(3, 3)(x)))
    m = Model(x, L.Linear(2)(L.Flatten()(L.BatchNorm2d()(h))), seed=3)
    xs = np.random.default_rng(3).standard_normal((4, 2, 5, 5))
    check_model(m, xs, training=True)
    check_model(m, xs, training=False)


def test_shape_mismatch_errors_name_the_layer_and_shapes():
    x = Input((3, 8, 8))
    a, b = L.Conv2d(16, 1)(x), L.Conv2d(32, 1)(x)
    with pytest.raises(ValueError, match=r"Add layer 'res2'.*16 vs 32.*\(None, 16, 8, 8\), \(None, 32, 8, 8\)"):
        L.Add(name="res2")([a, b])
    with pytest.raises(ValueError, match=r"Concat layer.*axis 2 differs.*\(None, 16, 8, 8\), \(None, 3, 4, 4\)"):
        L.Concat()([a, L.MaxPool2d(2)(x)])
    with pytest.raises(ValueError, match=r"Linear layer.*Flatten"):
        L.Linear(10)(a)


def test_graph_errors():
    x, y = Input((3,)), Input((3,))
    out = L.Add()([x, y])
    with pytest.raises(ValueError, match="graph disconnected.*not among the model inputs"):
        Model(x, out)
    with pytest.raises(TypeError, match="made by Input"):
        Model(L.ReLU()(x), out)
    m = Model([x, y], out)
    with pytest.raises(ValueError, match=r"expects 2 input array\(s\)"):
        m.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"expects arrays of shape \(batch, 3\), received shape \(2, 4\)"):
        m.forward([np.ones((2, 4)), np.ones((2, 3))])
    m.forward([np.ones((2, 3)), np.ones((2, 3))])
    with pytest.raises(RuntimeError, match="retain_state=True"):
        m.backward(np.ones((2, 3)))


def test_auto_names_unique_and_user_names_win():
    x = Input((2, 6, 6))
    h = L.Conv2d(2, 3, name="conv2d_1")(x)
    h = L.Conv2d(2, 1)(h)
    h = L.Conv2d(2, 1)(h)
    m = Model(x, h)
    assert [layer.name for layer in m.layers] == ["conv2d_1", "conv2d", "conv2d_2"]
    assert m.get_layer("conv2d_2") is m.layers[2] and m.input_names == ["input"]
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        m.get_layer("nope")
    dup = L.ReLU(name="conv2d")(h)
    with pytest.raises(ValueError, match="two different layers are named 'conv2d'"):
        Model(x, dup)


def test_dict_inputs_and_lists():
    m = inception_residual_net()
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((2, 3, 6, 6)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)]
    a = m.forward(xs)
    b = m.forward({"image": xs[0], "meta": xs[1]})
    assert isinstance(a, list) and len(a) == 2 and a[0].shape == (2, 5) and a[1].shape == (2, 2)
    np.testing.assert_array_equal(a[0], b[0])


def test_cut_and_new_head_share_layers_and_weights():
    x = Input((1, 8, 8))
    h = L.ReLU()(L.Conv2d(4, 3, name="features")(x))
    base = Model(x, L.Linear(10, name="head")(L.Flatten()(L.MaxPool2d(2, name="pool")(h))), seed=0)
    for trunk in (base.cut("pool"), Model(base.input, base.get_layer("pool").output)):
        assert trunk.get_layer("features") is base.get_layer("features")
        assert trunk.output.shape == (4, 3, 3)
    for layer in base.cut("pool").layers:
        layer.trainable = False
    new = Model(base.input, L.Linear(3)(L.Flatten()(base.get_layer("pool").output)))
    assert new.get_layer("features").params["weight"] is base.get_layer("features").params["weight"]
    assert [layer.name for layer in new.layers][-2:] == ["flatten", "linear"]
    assert list(new.gradients()) == ["linear.weight", "linear.bias"]
    xs = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    new.forward(xs, training=True)
    assert new.backward(np.ones((2, 3), np.float32), need_input_grads=False) is None
    assert base.forward(xs).shape == (2, 10)                      # the old model is untouched


def test_state_dict_round_trip_and_strict_errors():
    a, b = inception_residual_net(seed=0), inception_residual_net(seed=1)
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 4))]
    a.forward(xs, training=True)                                  # moves a's running statistics
    assert not np.allclose(a.forward(xs)[0], b.forward(xs)[0])
    sd = {k: v.copy() for k, v in a.state_dict().items()}
    b.load_state_dict(sd)
    np.testing.assert_array_equal(a.forward(xs)[0], b.forward(xs)[0])
    bad = dict(sd)
    bad.pop("main.bias")
    bad["extra.weight"] = np.zeros(3)
    bad["side.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"missing: \['main.bias'\].*unexpected: \['extra.weight'\].*"
                                         r"side.weight: model \(2, 8\), received \(3, 3\)"):
        b.load_state_dict(bad)
    bad.pop("side.weight")
    missing, unexpected = b.load_state_dict(bad, strict=False)
    assert missing == ["main.bias", "side.weight"] and unexpected == ["extra.weight"]


def test_config_round_trip_rebuilds_same_network():
    for m in (inception_residual_net(), Sequential([L.Conv2d(3, 3), L.ReLU(), L.Flatten(), L.Linear(2)],
                                                   input_shape=(1, 5, 5), seed=0)):
        cfg = json.loads(json.dumps(m.get_config()))
        clone = Model.from_config(cfg)
        assert type(clone) is type(m)
        assert clone.get_config() == cfg
        clone.load_state_dict(m.state_dict())
        xs = [np.ones((2, *t.shape), np.float32) for t in m.inputs]
        ya, yb = m.forward(xs), clone.forward(xs)
        for u, v in zip(ya if isinstance(ya, list) else [ya], yb if isinstance(yb, list) else [yb]):
            np.testing.assert_array_equal(u, v)


def test_shared_layer_config_round_trip():
    x = Input((4,))
    shared = L.Linear(4)
    m = Model(x, shared(L.ReLU()(shared(x))), seed=0)
    clone = Model.from_config(json.loads(json.dumps(m.get_config())))
    clone.load_state_dict(m.state_dict())
    assert len(clone.layers) == 2
    np.testing.assert_array_equal(clone.forward(np.ones((1, 4))), m.forward(np.ones((1, 4))))


def test_sequential():
    seq = Sequential([L.Conv2d(6, 5, padding=2), L.ReLU(), L.MaxPool2d(2), L.Flatten(), L.Linear(10)],
                     input_shape=(1, 28, 28), seed=0, name="lenet_ish")
    assert seq.output.shape == (10,) and [la.name for la in seq.layers][:2] == ["conv2d", "relu"]
    seq2 = Sequential([Input((1, 28, 28)), L.Conv2d(6, 5, padding=2), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                       L.Linear(10)], seed=0)
    for k, v in seq.state_dict().items():
        np.testing.assert_array_equal(v, seq2.state_dict()[k])
    seq2.add(L.Softmax())
    p = seq2.forward(np.zeros((3, 1, 28, 28), np.float32))
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(seq2.get_layer("conv2d").params["weight"], seq.get_layer("conv2d").params["weight"])
    with pytest.raises(ValueError, match="input_shape"):
        Sequential([L.ReLU()])
    with pytest.raises(TypeError, match="not a Layer"):
        Sequential([L.ReLU(), "relu"], input_shape=(3,))
    check_model(Sequential([L.Linear(3), L.Tanh(), L.Linear(2)], input_shape=(4,), seed=0),
                np.random.default_rng(0).standard_normal((3, 4)))


def test_frozen_backbone_skips_backward():
    calls = []
    x = Input((2, 5, 5))
    conv = L.Conv2d(2, 3, trainable=False)
    orig = conv.backward
    conv.backward = lambda gy, need_gx=True: calls.append(1) or orig(gy, need_gx)
    m = Model(x, L.Linear(2)(L.Flatten()(conv(x))), seed=0)
    m.forward(np.ones((1, 2, 5, 5), np.float32), training=True)
    m.backward(np.ones((1, 2), np.float32), need_input_grads=False)
    assert calls == []
    m.forward(np.ones((1, 2, 5, 5), np.float32), training=True)
    m.backward(np.ones((1, 2), np.float32))
    assert calls == [1]


# ---------------------------------------------------------------- optional PyTorch cross-check


def _compare_with_torch(torch, tm, m, x_shape, seed=0):
    """Copy ``tm``'s weights into ``m`` (float64), then compare outputs, input and parameter gradients
    and the updated running statistics after one training step, and the outputs in eval mode."""
    tm = tm.double().train()
    m.astype(np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((3, *x_shape))
    tx = torch.tensor(xs, requires_grad=True)
    ty = tm(tx)
    gy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    y = m.forward(xs, training=True)
    gx = m.backward(gy)
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(gx, tx.grad.numpy(), atol=1e-5)
    grads = m.gradients()
    assert set(grads) == {k for k, _ in tm.named_parameters()}
    for k, p in tm.named_parameters():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), atol=1e-5, err_msg=k)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(m.state_dict()[k], v.numpy(), atol=1e-5, err_msg=k)
    with torch.no_grad():
        np.testing.assert_allclose(m.forward(xs), tm.eval()(torch.tensor(xs)).numpy(), atol=1e-5)


def test_resnet_block_matches_pytorch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6)
            self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
            self.down, self.bnd = nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6)
            self.fc = nn.Linear(6, 5)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            r = torch.relu(self.bn2(self.conv2(h)) + self.bnd(self.down(x)))
            return self.fc(r.mean((2, 3)))

    x = Input((4, 6, 6))
    h = L.ReLU()(L.BatchNorm2d(name="bn1")(L.Conv2d(6, 3, 2, 1, bias=False, name="conv1")(x)))
    short = L.BatchNorm2d(name="bnd")(L.Conv2d(6, 1, 2, bias=False, name="down")(x))
    r = L.ReLU()(L.Add()([L.BatchNorm2d(name="bn2")(L.Conv2d(6, 3, padding=1, bias=False, name="conv2")(h)), short]))
    m = Model(x, L.Linear(5, name="fc")(L.Flatten()(L.GlobalAvgPool2d()(r))))
    _compare_with_torch(torch, Block(), m, (4, 6, 6))


def test_inception_module_matches_pytorch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(1)

    class Inception(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1 = nn.Conv2d(4, 2, 1)
            self.b2_1, self.b2_2 = nn.Conv2d(4, 3, 1), nn.Conv2d(3, 4, 3, padding=1)
            self.b3_1, self.b3_2 = nn.Conv2d(4, 2, 1), nn.Conv2d(2, 3, 5, padding=2)
            self.b4 = nn.Conv2d(4, 2, 1)
            self.pool = nn.MaxPool2d(3, 1, 1)
            self.fc = nn.Linear(11 * 3 * 3, 4)

        def forward(self, x):
            z = torch.cat([torch.relu(self.b1(x)), torch.relu(self.b2_2(torch.relu(self.b2_1(x)))),
                           torch.relu(self.b3_2(torch.relu(self.b3_1(x)))), torch.relu(self.b4(self.pool(x)))], 1)
            return self.fc(torch.flatten(nn.functional.avg_pool2d(z, 2), 1))

    x = Input((4, 6, 6))
    relu = lambda t: L.ReLU()(t)  # noqa: E731
    b1 = relu(L.Conv2d(2, 1, name="b1")(x))
    b2 = relu(L.Conv2d(4, 3, padding=1, name="b2_2")(relu(L.Conv2d(3, 1, name="b2_1")(x))))
    b3 = relu(L.Conv2d(3, 5, padding=2, name="b3_2")(relu(L.Conv2d(2, 1, name="b3_1")(x))))
    b4 = relu(L.Conv2d(2, 1, name="b4")(L.MaxPool2d(3, 1, 1)(x)))
    z = L.AvgPool2d(2)(L.Concat()([b1, b2, b3, b4]))
    m = Model(x, L.Linear(4, name="fc")(L.Flatten()(z)))
    _compare_with_torch(torch, Inception(), m, (4, 6, 6))


def _corenet_imports(module) -> set:
    """Every corenet module ``module`` imports (module level and inside functions), read with ast."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    tree = ast.parse(open(spec.origin).read())
    package = module.rsplit(".", 1)[0] if not spec.origin.endswith("__init__.py") else module
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("corenet"))
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module
            if base.startswith("corenet"):
                found.update(f"{base}.{a.name}" if node.module is None else base for a in node.names)
    return found


def test_symbolic_graph_sits_below_the_layers_and_execution_above():
    """The graph split: SymbolicTensor, Node and connect (layers/symbolic.py) import nothing of corenet;
    layers/base.py builds on them and never imports the graph's execution (corenet/graph.py), which
    re-exports the symbolic names, so they stay one set of classes under their public names."""
    from corenet import graph
    from corenet.layers import input as input_module
    from corenet.layers import symbolic

    assert _corenet_imports("corenet.layers.symbolic") == set()
    assert not {m for m in _corenet_imports("corenet.layers.base") if m.startswith("corenet.graph")}
    assert "corenet.graph" not in _corenet_imports("corenet.layers.input")
    assert graph.SymbolicTensor is symbolic.SymbolicTensor and graph.Node is symbolic.Node
    assert graph.connect is symbolic.connect and graph.Input is input_module.Input is corenet.Input
    assert graph.InputLayer is input_module.InputLayer
    t = Input((2, 3))
    y = L.Flatten()(t)
    assert isinstance(y, symbolic.SymbolicTensor) and y.node.inputs == [t] and y.shape == (6,)


def test_no_layer_graph_loss_or_optimizer_module_asks_where_an_array_lives():
    """Above functional/, arrays are moved and combined through corenet.functional only: no module of
    the graph, the layers, the losses or the optimizers imports the kernels, functional's device
    plumbing or a private functional module, or tests for device arrays itself."""
    import pkgutil

    modules = ["corenet.graph", "corenet.losses", "corenet.optim"]
    modules += [f"corenet.layers.{m.name}" for m in pkgutil.iter_modules(L.__path__)]
    for module in modules:
        imported = _corenet_imports(module)
        bad = {m for m in imported if m.startswith("corenet.kernels") or m.startswith("corenet.functional.device")
               or m.startswith("corenet.functional._")}
        assert not bad, f"{module} imports {sorted(bad)}"
        import importlib.util

        source = open(importlib.util.find_spec(module).origin).read()
        for word in ("copy_to_host", "copy_to_device", "cuda_module", "is_device"):
            assert word not in source, f"{module} mentions {word}"
