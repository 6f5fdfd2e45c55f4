"""Checkpoints: round trips, atomic writes, strict loading, exact resume, corrupt files, PyTorch import."""

import os

import numpy as np
import pytest

import corenet
from corenet import Input, Model, Sequential, callbacks, optim
from corenet import io as cio
from corenet import layers as L
from corenet.io import atomic as cio_atomic


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 6, 6)).astype(np.float32)
    y = (x[:, 0, :3].mean(axis=(1, 2)) > x[:, 1, 3:].mean(axis=(1, 2))).astype(np.int64) + (x[:, 0, 0, 0] > 1)
    return x, y


def convnet(seed=0):
    """Conv + BN (buffers) + dropout (random generator) + a two-input-free residual Add."""
    x = Input((2, 6, 6))
    h = L.ReLU()(L.BatchNorm2d(name="bn")(L.Conv2d(4, 3, padding=1, bias=False, name="conv")(x)))
    h = L.Add()([h, L.Conv2d(4, 1, name="proj")(x)])
    h = L.Dropout(0.25, name="drop")(L.Flatten()(L.MaxPool2d(2)(h)))
    return Model(x, L.Linear(3, name="fc")(h), seed=seed)


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_save_load_gives_identical_predictions_and_optimizer(tmp_path):
    x, y = data()
    model = convnet()
    model.compile(optim.Adam(lr=3e-3), "cross_entropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=1, seed=0, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = corenet.load(path)
    assert type(loaded) is Model and [la.name for la in loaded.layers] == [la.name for la in model.layers]
    assert_same_state(model, loaded)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert type(loaded.optimizer) is optim.Adam and loaded.optimizer.lr == 3e-3
    sa, sb = model.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    # the loaded model keeps training exactly like the original
    model.train_on_batch(x[:16], y[:16])
    loaded.train_on_batch(x[:16], y[:16])
    assert_same_state(model, loaded)


def test_sequential_and_weights_only_round_trip(tmp_path):
    model = Sequential([L.Flatten(), L.Linear(5), L.ReLU(), L.Linear(2)], input_shape=(2, 6, 6), seed=3)
    path = tmp_path / "seq.npz"
    corenet.save(model, path)  # not compiled: architecture and weights only
    loaded = corenet.load(path)
    assert type(loaded) is Sequential and loaded.optimizer is None
    x, _ = data(8)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    wpath = tmp_path / "w.npz"
    model.save_weights(wpath)
    other = Sequential([L.Flatten(), L.Linear(5), L.ReLU(), L.Linear(2)], input_shape=(2, 6, 6), seed=4)
    assert other.load_weights(wpath) == ([], [])
    assert_same_state(model, other)
    with pytest.raises(ValueError, match="weights only"):
        corenet.load(wpath)


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    model = convnet()
    path = tmp_path / "ckpt.npz"
    model.save(path)
    old_bytes = path.read_bytes()
    real_savez = np.savez

    def savez_then_crash(f, **arrays):  # write part of an archive, then fail as a full disk would
        real_savez(f, **dict(list(arrays.items())[:2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cio_atomic.np, "savez", savez_then_crash)
    for p in model.parameters().values():
        p += 1.0
    with pytest.raises(OSError, match="No space left"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary file left behind
    restored = convnet(seed=9)
    restored.load_weights(path)
    np.testing.assert_array_equal(restored.parameters()["fc.weight"] + 1.0, model.parameters()["fc.weight"])


@pytest.mark.skipif(os.name == "nt", reason="writer liveness is checked with POSIX signals")
def test_save_removes_only_temporaries_whose_writer_is_gone(tmp_path, monkeypatch):
    import re
    import subprocess

    host = cio_atomic._host_tag()
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    live = subprocess.Popen(["sleep", "60"])
    try:
        names = {"dead": f".model.npz.{host}.{dead.pid}.k2j3h4g5.tmp",
                 "live": f".model.npz.{host}.{live.pid}.a1b2c3d4.tmp",  # another process saving right now
                 "other host": f".model.npz.x{host}.{dead.pid}.e5f6g7h8.tmp",  # another rank's, on another host
                 "unnamed writer": ".model.npz.q9w8e7r6.tmp",  # written before writers were named
                 "other target": f".other.npz.{host}.{dead.pid}.t5y6u7i8.tmp"}
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial archive")
        renames = []
        real_replace = os.replace
        monkeypatch.setattr(cio_atomic.os, "replace",
                            lambda a, b: (renames.append(os.path.basename(a)), real_replace(a, b)))
        convnet().save(tmp_path / "model.npz")
        monkeypatch.undo()
        left = set(os.listdir(tmp_path))
        assert names["dead"] not in left
        assert {n for k, n in names.items() if k != "dead"} | {"model.npz"} == left
        assert re.fullmatch(rf"\.model\.npz\.{re.escape(host)}\.{os.getpid()}\.[a-z0-9_]+\.tmp", renames[0])
        corenet.load(tmp_path / "model.npz")  # the checkpoint itself is whole
    finally:
        live.kill()
        live.wait()


def test_strict_loading_reports_missing_unexpected_and_shapes(tmp_path):
    model = convnet()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    smaller = Sequential([L.Flatten(), L.Linear(3, name="fc")], input_shape=(2, 6, 6))
    with pytest.raises(ValueError) as err:
        smaller.load_weights(path)
    msg = str(err.value)
    assert str(path) in msg and "fc.weight: model (3, 72), received (3, 36)" in msg
    x = Input((4,))
    other = Model(x, L.Linear(3, name="head")(L.BatchNorm1d(name="bn")(x)))
    with pytest.raises(ValueError) as err:
        other.load_weights(path)
    msg = str(err.value)
    assert "missing: ['head.weight', 'head.bias']" in msg and "strict=False ignores" in msg
    assert "unexpected: [" in msg and "'conv.weight'" in msg and "bn.weight: model" not in msg
    # strict=False loads what matches and reports the rest
    x = Input((2, 6, 6))
    partial = Model(x, L.Conv2d(4, 3, padding=1, bias=False, name="conv")(x))
    missing, unexpected = partial.load_weights(path, strict=False)
    assert missing == [] and "fc.weight" in unexpected and "conv.weight" not in unexpected
    np.testing.assert_array_equal(partial.state_dict()["conv.weight"], model.state_dict()["conv.weight"])


def test_corrupt_and_missing_files_are_named(tmp_path):
    model = convnet()
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(ValueError, match="garbage.npz.*not a readable corenet checkpoint"):
        corenet.load(bad)
    good = tmp_path / "good.npz"
    model.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        model.load_weights(truncated)
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        corenet.load(tmp_path / "nothere.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, __meta__=np.array('{"format": "something-else"}'))
    with pytest.raises(ValueError, match="foreign.npz.*not a corenet checkpoint"):
        corenet.load(foreign)


def resumable(seed):
    model = convnet(seed=seed)
    model.compile(optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4), "cross_entropy")
    return model


def cbs():
    return [callbacks.ReduceLROnPlateau(monitor="val_accuracy", patience=1, factor=0.5),
            callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.9)]


def test_resume_is_bitwise_exact(tmp_path):
    x, y = data()
    kw = dict(batch_size=16, validation_split=0.25, seed=11, verbose=0)
    straight = resumable(seed=0)
    h_straight = straight.fit(x, y, epochs=3, callbacks=cbs(), **kw)

    path = tmp_path / "run.npz"
    first = resumable(seed=0)
    first.fit(x, y, epochs=1, callbacks=cbs(), resume=path, **kw)  # "killed" after epoch 1
    second = resumable(seed=123)  # a fresh process: other initial weights, other dropout generator
    second.fit(x, y, epochs=2, callbacks=cbs(), resume=path, **kw)
    third = resumable(seed=7)
    h_resumed = third.fit(x, y, epochs=3, callbacks=cbs(), resume=path, **kw)
    assert_same_state(straight, third)
    assert h_resumed.history == h_straight.history
    assert third.optimizer.lr == straight.optimizer.lr and third.optimizer.iterations == straight.optimizer.iterations


def test_resume_after_save_and_load(tmp_path):
    x, y = data()
    kw = dict(batch_size=16, seed=5, verbose=0)
    straight = resumable(seed=0)
    straight.fit(x, y, epochs=2, **kw)
    model = resumable(seed=0)
    model.fit(x, y, epochs=1, **kw)
    path = tmp_path / "after1.npz"
    model.save(path)
    loaded = corenet.load(path)
    loaded.fit(x, y, epochs=2, resume=path, **kw)
    assert_same_state(straight, loaded)
    with pytest.raises(ValueError, match="seed=5"):
        corenet.load(path).fit(x, y, epochs=2, resume=path, batch_size=16, seed=6, verbose=0)


def test_model_checkpoint_file_resumes_exactly(tmp_path):
    x, y = data()
    kw = dict(batch_size=16, seed=2, verbose=0, validation_split=0.25)
    straight = resumable(seed=0)
    straight.fit(x, y, epochs=2, callbacks=cbs(), **kw)
    model = resumable(seed=0)
    pattern = str(tmp_path / "ck-{epoch}.npz")
    model.fit(x, y, epochs=2, callbacks=[callbacks.ModelCheckpoint(pattern), *cbs()], **kw)
    resumed = resumable(seed=1)
    resumed.fit(x, y, epochs=2, callbacks=cbs(), resume=tmp_path / "ck-1.npz", **kw)
    assert_same_state(straight, resumed)


def test_early_stopping_best_weights_survive_a_checkpoint(tmp_path):
    x, y = data()
    model = resumable(seed=0)
    es = callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    model.fit(x, y, epochs=1, batch_size=16, validation_split=0.25, seed=0, verbose=0, callbacks=[es],
              resume=tmp_path / "r.npz")
    state = cio.read_checkpoint(tmp_path / "r.npz")["train_state"]
    saved = next(c["state"] for c in state["callbacks"] if c["class"] == "EarlyStopping")
    for k, v in es.best_weights.items():
        np.testing.assert_array_equal(saved["best_weights"][k], v)


def torch_like_state_dict(model):
    """What ``torch.save``-then-``np.savez`` of the same network gives: other module paths, same leaves."""
    sd = model.state_dict()
    out = {
        "features.0.weight": sd["conv.weight"],
        "features.1.weight": sd["bn.weight"], "features.1.bias": sd["bn.bias"],
        "features.1.running_mean": sd["bn.running_mean"], "features.1.running_var": sd["bn.running_var"],
        "features.1.num_batches_tracked": np.array(7),
        "shortcut.weight": sd["proj.weight"], "shortcut.bias": sd["proj.bias"],
        "classifier.weight": sd["fc.weight"], "classifier.bias": sd["fc.bias"],
    }
    return {k: np.array(v) + (0.5 if v.dtype.kind == "f" else 0) for k, v in out.items()}


def test_load_torch_state_dict_in_order_and_by_map(tmp_path):
    src = convnet(seed=0)
    sd = torch_like_state_dict(src)
    path = tmp_path / "torch.npz"
    np.savez(path, **sd)
    dst = convnet(seed=1)
    pairs = corenet.load_torch_state_dict(dst, path)
    assert pairs["bn.running_var"] == "features.1.running_var" and pairs["fc.weight"] == "classifier.weight"
    np.testing.assert_array_equal(dst.state_dict()["bn.running_mean"], sd["features.1.running_mean"])
    np.testing.assert_array_equal(dst.state_dict()["fc.weight"], sd["classifier.weight"])
    assert int(dst.state_dict()["bn.num_batches_tracked"]) == 7
    dst2 = convnet(seed=2)
    corenet.load_torch_state_dict(dst2, sd, name_map={"features.0": "conv", "features.1": "bn", "shortcut": "proj",
                                                      "classifier.weight": "fc.weight", "classifier.bias": "fc.bias"})
    assert_same_state(dst, dst2)


def test_load_torch_state_dict_reports_mismatches():
    src = convnet(seed=0)
    sd = torch_like_state_dict(src)
    sd["classifier.weight"] = np.zeros((3, 10), np.float32)
    with pytest.raises(ValueError, match=r"classifier.weight \(3, 10\) -> fc.weight \(3, 36\)"):
        corenet.load_torch_state_dict(convnet(seed=1), sd)
    sd = torch_like_state_dict(src)
    del sd["shortcut.bias"]
    with pytest.raises(ValueError, match="torch 'shortcut' has \\['weight'\\] but corenet 'proj' has"):
        corenet.load_torch_state_dict(convnet(seed=1), sd)
    sd = torch_like_state_dict(src)
    sd["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="unpaired torch: \\['extra'\\]"):
        corenet.load_torch_state_dict(convnet(seed=1), sd)
    target = convnet(seed=1)
    corenet.load_torch_state_dict(target, sd, strict=False)
    np.testing.assert_array_equal(target.state_dict()["fc.bias"], sd["classifier.bias"])


def test_multi_output_compile_settings_survive_save_and_load(tmp_path):
    from corenet import losses

    x = Input((5,))
    trunk = L.ReLU()(L.Linear(6, name="trunk")(x))
    model = Model(x, [L.Linear(3, name="main")(trunk), L.Linear(3, name="aux")(trunk)], seed=0)
    model.compile(optim.RMSProp(lr=0.01, rho=0.8), [losses.CrossEntropy(label_smoothing=0.1), "cross_entropy"],
                  loss_weights=[1.0, 0.3])
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    model.train_on_batch(xs, ys)
    model.save(tmp_path / "m.npz")
    loaded = corenet.load(tmp_path / "m.npz")
    assert loaded._loss_weights == [1.0, 0.3]
    assert isinstance(loaded._loss_fns[0], losses.CrossEntropy) and loaded._loss_fns[0].label_smoothing == 0.1
    assert isinstance(loaded.optimizer, optim.RMSProp) and loaded.optimizer.rho == 0.8
    assert model.train_on_batch(xs, ys) == loaded.train_on_batch(xs, ys)
    assert_same_state(model, loaded)


def test_csv_logger_continues_one_file_across_a_resume(tmp_path):
    x, y = data(48)
    log, ckpt = tmp_path / "log.csv", tmp_path / "run.npz"
    kw = dict(batch_size=16, seed=0, verbose=0, resume=ckpt)
    resumable(seed=0).fit(x, y, epochs=1, callbacks=[callbacks.CSVLogger(log, append=True)], **kw)
    resumable(seed=0).fit(x, y, epochs=3, callbacks=[callbacks.CSVLogger(log, append=True)], **kw)
    rows = log.read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss,lr" and [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]



def _imported(source: str, module: str) -> list:
    """Every corenet module name an import in ``source`` (the text of ``module``) may load, at any depth."""
    import ast

    package = module.split(".")[:-1]  # a package's __init__ counts as a module inside it
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])
                            ) if node.level else node.module
            names += [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_io_training_and_callbacks_import_nothing_above_them():
    """The floors of issue 14 for these packages, read with ast (function-level imports count): io works on
    plain state dicts and imports no Model; training sits below the model; callbacks need neither io nor training."""
    import pathlib

    assert "corenet.model.Model" in _imported("def f():\n    from ...model import Model\n", "corenet.io.onnx.importer")
    root = pathlib.Path(corenet.__file__).parent
    above = {"io": ("corenet.model", "corenet.training", "corenet.models", "corenet.cli"),
             "training": ("corenet.model", "corenet.models", "corenet.cli"),
             "callbacks": ("corenet.io", "corenet.training", "corenet.model", "corenet.models", "corenet.cli")}
    found = []
    for package, banned in above.items():
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(("corenet", *path.relative_to(root).with_suffix("").parts))
            found += [f"{module} imports {name}" for name in _imported(path.read_text(), module)
                      if any(name == b or name.startswith(b + ".") for b in banned)]
    assert found == []
