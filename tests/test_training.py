"""compile / train_on_batch / fit / evaluate / predict on tiny synthetic problems (seconds each)."""

import io
import sys

import numpy as np
import pytest

from corenet import Input, Model, callbacks, optim
from corenet import layers as L
from corenet.data import DataLoader


def blobs(n=240, d=8, k=3, seed=0):
    centers = np.random.default_rng(100 + d).normal(size=(k, d)) * 2.0  # one problem, seed picks the samples
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def mlp(seed=1, dropout=0.0, bn=False, d=8, k=3):
    x = Input((d,))
    h = L.Linear(16, name="fc1")(x)
    if bn:
        h = L.BatchNorm1d(name="bn1")(h)
    h = L.ReLU(name="relu1")(h)
    if dropout:
        h = L.Dropout(dropout, name="drop")(h)
    return Model(x, L.Linear(k, name="fc2")(h), seed=seed)


def copy_params(model):
    return {k: v.copy() for k, v in model.parameters().items()}


def test_fit_reduces_loss_and_history_keys():
    x, y = blobs()
    xv, yv = blobs(60, seed=1)
    model = mlp()
    model.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    hist = model.fit(x, y, batch_size=32, epochs=4, validation_data=(xv, yv), seed=0, verbose=0)
    h = hist.history
    assert list(h) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert all(len(v) == 4 for v in h.values()) and hist.epoch == [0, 1, 2, 3]
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert h["accuracy"][-1] > 0.9 and h["val_accuracy"][-1] > 0.85
    assert h["lr"] == [0.05] * 4
    ev = model.evaluate(xv, yv, batch_size=17)
    assert ev["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-6)
    assert ev["accuracy"] == h["val_accuracy"][-1]


def test_validation_split_holds_out_a_seeded_stratified_subset():
    from corenet.training.loop import _split

    x, y = blobs(100)
    model = mlp()
    model.compile(optim.SGD(lr=0.05), "cross_entropy")
    h = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, seed=0, verbose=0).history
    _, _, ([xv], yv) = _split([x], y, 20, 0)  # drawn from the fit seed (tests/test_data_images.py checks more)
    ev = model.evaluate(xv, yv)
    assert h["val_loss"][-1] == pytest.approx(ev["loss"], rel=1e-6)
    assert h["val_accuracy"][-1] == ev["accuracy"]
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.0, verbose=0)


def test_verbose_modes(capsys, monkeypatch):
    x, y = blobs(64)
    model = mlp()
    model.compile("sgd", "cross_entropy")
    model.fit(x, y, batch_size=16, epochs=3, seed=0)  # captured stdout is not a TTY: one line per epoch
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, 1):
        assert line.startswith(f"Epoch {i}/3 - 4/4 - ") and " - loss: " in line and " - accuracy: " in line
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""

    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    model.fit(x, y, batch_size=16, epochs=2, seed=0)  # "auto" on a terminal: the progress bar
    monkeypatch.undo()
    out = tty.getvalue()
    assert out.startswith("Epoch 1/2\n") and "\r" in out and "4/4 [==============================]" in out
    assert out.count("\n") == 4 and ("ms/step" in out or "us/step" in out)


def test_predict_batched_equals_unbatched():
    x, _ = blobs(50)
    model = mlp(bn=True, dropout=0.5)
    whole = model.predict(x, batch_size=50)
    parts = model.predict(x, batch_size=7)
    assert parts.shape == (50, 3) and parts.dtype == np.float32
    np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.predict(x[:7], batch_size=7), parts[:7])
    np.testing.assert_array_equal(model.predict(x.astype(np.float64), batch_size=50), whole)  # cast to the model


def two_head_model(seed=3):
    x = Input((6,), dtype=np.float64)
    trunk = L.Tanh(name="t")(L.Linear(5, name="trunk")(x))
    a = L.Linear(3, name="head_a")(trunk)
    b = L.Linear(3, name="head_b")(trunk)
    return Model(x, [a, b], seed=seed)


def test_multiple_outputs_gradient_is_weighted_sum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6))
    ya, yb = rng.integers(0, 3, 8), rng.integers(0, 3, 8)
    model = two_head_model()
    model.compile(optim.SGD(lr=1.0), "cross_entropy", loss_weights=[1.0, 0.3])
    from corenet import losses

    ce = losses.get("cross_entropy")
    out_a, out_b = model.forward(x, training=True)
    la, ga = ce(out_a, ya)
    lb, gb = ce(out_b, yb)
    grads = {}
    for gys in ([ga, np.zeros_like(gb)], [np.zeros_like(ga), gb]):
        model.forward(x, training=True)
        model.zero_grad()
        model.backward(gys)
        for k, g in model.gradients().items():
            grads.setdefault(k, []).append(g.copy())
    expected = {k: ga_ + 0.3 * gb_ for k, (ga_, gb_) in grads.items()}
    before = copy_params(model)
    loss = model.train_on_batch(x, [ya, yb])
    assert loss == pytest.approx(la + 0.3 * lb, rel=1e-12)
    for k, p in model.parameters().items():  # plain SGD with lr 1: theta_new = theta - g
        np.testing.assert_allclose(before[k] - p, expected[k], rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(expected["trunk.weight"], grads["trunk.weight"][0] + 0.3 * grads["trunk.weight"][1])


def test_multiple_outputs_fit_dict_weights_and_shared_target():
    x, y = blobs(64, d=6)
    model = two_head_model()
    model.compile("adam", {"head_a": "cross_entropy", "head_b": "cross_entropy"}, loss_weights={"head_b": 0.3})
    h = model.fit(x.astype(np.float64), y, batch_size=16, epochs=2, validation_split=0.25, seed=0, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    preds = model.predict(x)
    assert isinstance(preds, list) and [p.shape for p in preds] == [(64, 3), (64, 3)]
    with pytest.raises(ValueError, match="loss_weights names unknown outputs"):
        model.compile("sgd", "cross_entropy", loss_weights={"nope": 1.0})
    with pytest.raises(ValueError, match="2 outputs"):
        model.compile("sgd", ["cross_entropy"])


def test_freezing_leaves_frozen_weights_bit_identical():
    x, y = blobs(96)
    model = mlp(bn=True)
    model.get_layer("fc1").trainable = False
    model.get_layer("bn1").trainable = False
    model.compile(optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model.fit(x, y, batch_size=16, epochs=2, seed=0, verbose=0)
    after = model.state_dict()
    for k in ("fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert not np.array_equal(after["fc2.weight"], before["fc2.weight"])
    # frozen batch norm normalises with its running statistics also in training mode
    np.testing.assert_array_equal(model.forward(x, training=True), model.forward(x, training=False))
    model.get_layer("fc1").trainable = True  # unfreezing takes effect on the next step
    model.train_on_batch(x[:16], y[:16])
    assert not np.array_equal(model.state_dict()["fc1.weight"], before["fc1.weight"])


def test_lr_mult_scales_the_layer_step():
    x, y = blobs(16)
    model = mlp()
    model.get_layer("fc1").lr_mult = 0.1
    model.compile(optim.SGD(lr=0.5), "cross_entropy")
    from corenet import losses

    out = model.forward(x, training=True)
    model.zero_grad()
    model.backward(losses.get("cross_entropy")(out, y)[1])
    g = {k: v.copy() for k, v in model.gradients().items()}
    before = copy_params(model)
    model.train_on_batch(x, y)
    after = model.parameters()
    np.testing.assert_allclose(before["fc1.weight"] - after["fc1.weight"], 0.05 * g["fc1.weight"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(before["fc2.weight"] - after["fc2.weight"], 0.5 * g["fc2.weight"], rtol=1e-5, atol=1e-7)


def test_nan_loss_raises_without_stepping_or_stops_with_terminate_on_nan(capsys):
    x, y = blobs(32)
    x[5, 0] = np.nan
    model = mlp()
    model.compile("sgd", "cross_entropy")
    before = copy_params(model)
    with pytest.raises(FloatingPointError, match="loss is nan.*TerminateOnNaN"):
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    for k, v in model.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    h = model.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    assert len(h.history["loss"]) == 1 and np.isnan(h.history["loss"][0])
    assert "invalid loss" in capsys.readouterr().out
    for k, v in model.parameters().items():
        np.testing.assert_array_equal(v, before[k])


def test_wrong_label_range_surfaces_the_loss_error():
    x, y = blobs(32)
    y[3] = 7
    model = mlp()
    model.compile("sgd", "cross_entropy")
    with pytest.raises(ValueError, match="out of range"):
        model.fit(x, y, epochs=1, verbose=0)


def test_compile_errors():
    x, y = blobs(8)
    model = mlp()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        model.compile("sgdd")
    with pytest.raises(ValueError, match="unknown loss"):
        model.compile("sgd", "cross_entropyy")
    model.compile("adam", "cross_entropy")
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y[:5], verbose=0)


def test_fit_arrays_and_dataloader_draw_the_same_batches():
    x, y = blobs(70)
    weights = []
    for use_loader in (False, True):
        model = mlp(dropout=0.3)
        model.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
        if use_loader:
            model.fit(DataLoader(x, y, batch_size=16, seed=5), epochs=2, verbose=0)
        else:
            model.fit(x, y, batch_size=16, epochs=2, seed=5, verbose=0)
        weights.append(copy_params(model))
    for k in weights[0]:
        np.testing.assert_array_equal(weights[0][k], weights[1][k], err_msg=k)
    with pytest.raises(ValueError, match="give the transform to the loader"):
        model.fit(DataLoader(x, y, batch_size=16, seed=5), validation_split=0.2, verbose=0)


def test_fit_serves_several_float64_inputs_as_the_dataloader_does():
    """fit wraps its arrays in a DataLoader (dtype=None): float64 stays float64, several inputs stay a list,
    and the steps are those of train_on_batch over the loader's batches, bit for bit."""
    rng = np.random.default_rng(3)
    x1, x2, y = rng.normal(size=(37, 8)), rng.normal(size=(37, 4)), rng.integers(0, 3, 37)

    def two_inputs():
        a, b = Input((8,)), Input((4,))
        h = L.Add()([L.Linear(6, name="fa")(a), L.Linear(6, name="fb")(b)])
        model = Model([a, b], L.Linear(3, name="head")(L.ReLU()(h)), seed=4).astype(np.float64)
        model.compile(optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
        return model

    fitted, stepped = two_inputs(), two_inputs()
    fitted.fit([x1, x2], y, batch_size=8, epochs=2, seed=11, verbose=0)
    loader = DataLoader([x1, x2], y, batch_size=8, seed=11, dtype=None)
    for epoch in range(2):
        for xb, yb in loader.iterate(epoch):
            assert isinstance(xb, list) and [a.dtype for a in xb] == [np.float64, np.float64] and yb.dtype == np.int64
            stepped.train_on_batch(xb, yb)
    for k, v in fitted.parameters().items():
        assert v.dtype == np.float64
        np.testing.assert_array_equal(v, stepped.parameters()[k], err_msg=k)


def test_transform_receives_the_epoch_generator():
    x, y = blobs(32)
    seen = []

    def jitter(xb, rng):
        seen.append(rng.integers(1 << 30))
        return xb + rng.normal(scale=0.01, size=xb.shape).astype(xb.dtype)

    model = mlp()
    model.compile("sgd", "cross_entropy")
    model.fit(x, y, batch_size=16, epochs=2, seed=3, transform=jitter, verbose=0)
    expected = []
    for e in range(2):
        rng = np.random.default_rng(np.random.SeedSequence([3, e, 1]))
        for _ in range(2):
            expected.append(rng.integers(1 << 30))
            rng.normal(scale=0.01, size=(16, 8))
    assert seen == expected


def test_reduce_lr_on_plateau_in_fit_logs_the_lr():
    x, y = blobs(64)
    model = mlp()
    model.compile(optim.SGD(lr=0.01), "cross_entropy")
    # min_delta larger than any change of the loss: every epoch after the first is a plateau
    cb = callbacks.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5, min_delta=10.0)
    h = model.fit(x, y, epochs=3, verbose=0, callbacks=[cb], seed=0).history
    assert h["lr"] == [0.01, 0.01, 0.005]  # the rate used during each epoch
    assert model.optimizer.lr == 0.0025
    sched = callbacks.LearningRateScheduler(optim.StepLR(1, gamma=0.5))
    model.optimizer.lr = 0.2
    h = model.fit(x, y, epochs=3, verbose=0, callbacks=[sched], seed=0).history
    assert h["lr"] == [0.2, 0.1, 0.05]


def test_transfer_learning_cut_new_head_trains_only_the_head():
    x, y = blobs(96)
    base = mlp(bn=True)
    base.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    base.fit(x, y, batch_size=16, epochs=2, seed=0, verbose=0)
    features = base.get_layer("relu1").output  # cut at a named node
    head = L.Linear(2, name="new_head")(L.Linear(4, name="new_hidden")(features))
    model = Model(base.input, head, seed=7)
    for layer in model.layers:
        layer.trainable = layer.name.startswith("new_")
    frozen = {k: v.copy() for k, v in model.state_dict().items() if not k.startswith("new_")}
    head_before = model.get_layer("new_head").params["weight"].copy()
    model.compile(optim.Adam(lr=0.01), "cross_entropy")
    h = model.fit(x, (y > 0).astype(np.int64), batch_size=16, epochs=3, seed=1, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    state = model.state_dict()
    for k, v in frozen.items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)
        assert state[k] is base.state_dict()[k]  # the cut model shares the trained arrays
    assert not np.array_equal(model.get_layer("new_head").params["weight"], head_before)


def test_train_on_batch_follows_astype_after_compile():
    x, y = blobs(16)
    model = mlp()
    model.compile(optim.SGD(lr=0.1), "cross_entropy")
    model.train_on_batch(x, y)
    model.astype(np.float64)  # new parameter arrays: the step must update these, not the old ones
    before = copy_params(model)
    model.train_on_batch(x.astype(np.float64), y)
    after = model.parameters()
    assert after["fc2.weight"].dtype == np.float64 and not np.array_equal(after["fc2.weight"], before["fc2.weight"])
