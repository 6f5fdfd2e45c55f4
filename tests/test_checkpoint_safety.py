"""A checkpoint is outside data: restoring one applies only declared, type-checked fields (never a path),
and every malformed file is a ValueError naming it (issue 12, items 4 and 6)."""

import json
import re
import struct

import numpy as np
import pytest

import corenet
from corenet import Input, Model, callbacks, optim
from corenet import layers as L


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > x[:, 1]).astype(np.int64)


def small(seed=0):
    x = Input((4,))
    model = Model(x, L.Linear(2, name="fc")(L.Dropout(0.25, name="drop")(L.ReLU()(L.Linear(6, name="h")(x)))),
                  seed=seed)
    model.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    return model


FIT = dict(batch_size=8, seed=0, verbose=0)


def checkpoint(tmp_path, cbs=None, name="run.npz"):
    """A real resumable checkpoint written by fit(resume=...) after one epoch."""
    path = tmp_path / name
    x, y = data()
    small().fit(x, y, epochs=1, callbacks=cbs or [], resume=path, **FIT)
    return path


def rewrite(path, edit_meta=None, edit_arrays=None):
    """Rewrite the checkpoint at ``path`` with its JSON header (and arrays) changed by the given functions."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["__meta__"]))
    if edit_meta is not None:
        meta = edit_meta(meta)
    arrays["__meta__"] = np.array(json.dumps(meta))
    if edit_arrays is not None:
        edit_arrays(arrays)
    np.savez(path, **arrays)
    return path


def set_callback_state(cls_name, state):
    def edit(meta):
        for entry in meta["train_state"]["callbacks"]:
            if entry["class"] == cls_name:
                entry["state"] = state
        return meta
    return edit


# ------------------------------------------------------------------ item 4: declared fields only
@pytest.mark.parametrize("make", [lambda p: callbacks.CSVLogger(p, append=True),
                                  lambda p: callbacks.ModelCheckpoint(p)], ids=["CSVLogger", "ModelCheckpoint"])
def test_a_checkpoint_cannot_redirect_a_callbacks_path(tmp_path, make):
    ours, victim = tmp_path / "ours.out", tmp_path / "victim.txt"
    victim.write_text("precious\n")
    cb = make(ours)
    path = checkpoint(tmp_path, [make(ours)])
    rewrite(path, set_callback_state(type(cb).__name__, {"path": str(victim)}))
    x, y = data()
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        small().fit(x, y, epochs=2, callbacks=[cb], resume=path, **FIT)
    assert "'path'" in str(err.value) and "unknown state field" in str(err.value)
    assert victim.read_text() == "precious\n" and cb.path == str(ours)


def test_mistyped_callback_fields_are_refused_before_anything_is_applied(tmp_path):
    path = checkpoint(tmp_path, [callbacks.ReduceLROnPlateau(monitor="loss", patience=3)])
    rewrite(path, set_callback_state("ReduceLROnPlateau", {"best": 0.5, "wait": "2", "cooldown_counter": 0}))
    cb = callbacks.ReduceLROnPlateau(monitor="loss", patience=3)
    x, y = data()
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'wait' must be an integer. Received: '2'"):
        small().fit(x, y, epochs=2, callbacks=[cb], resume=path, **FIT)
    assert cb.wait == 0 and cb.best == np.inf  # untouched (mode "min" starts at +inf)


@pytest.mark.parametrize("cb, state, field", [
    (callbacks.CSVLogger("log.csv"), {"path": "/etc/passwd"}, "path"),
    (callbacks.ModelCheckpoint("ck.npz"), {"best": 1.0, "path": "/tmp/x"}, "path"),
    (callbacks.EarlyStopping(), {"best": 1.0, "monitor": "loss"}, "monitor"),
    (callbacks.EarlyStopping(), {"best": "low"}, "best"),
    (callbacks.EarlyStopping(), {"best_weights": {"w": "not an array"}}, "best_weights"),
    (callbacks.History(), {"history": {"loss": ["x"]}}, "history"),
    (callbacks.History(), {"epoch": [0, 1.5]}, "epoch"),
    (callbacks.LearningRateScheduler(optim.StepLR(2)), {"base_lr": -1.0}, "base_lr"),
    (callbacks.TerminateOnNaN(), {"model": None}, "model"),
])
def test_set_state_applies_declared_fields_only(cb, state, field):
    before = dict(vars(cb))
    with pytest.raises(ValueError, match=f"{type(cb).__name__}.set_state: .*'?{field}'?"):
        cb.set_state(state)
    assert {k: v for k, v in vars(cb).items() if k != "best_weights"} == \
        {k: v for k, v in before.items() if k != "best_weights"}


def test_declared_fields_round_trip():
    es = callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    es.best, es.wait, es.best_epoch, es.best_weights = 0.25, 2, 4, {"w": np.arange(3.0)}
    again = callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    again.set_state(es.get_state())
    assert (again.best, again.wait, again.best_epoch) == (0.25, 2, 4)
    np.testing.assert_array_equal(again.best_weights["w"], np.arange(3.0))


class Counter(callbacks.Callback):
    """A user callback with state declares it."""

    state_fields = {"count": "int"}

    def __init__(self):
        self.count = 0

    def on_epoch_end(self, epoch, logs=None):
        self.count += 1

    def get_state(self):
        return {"count": self.count}


def test_user_callbacks_declare_their_fields(tmp_path):
    path = checkpoint(tmp_path, [Counter()])
    x, y = data()
    cb = Counter()
    small().fit(x, y, epochs=3, callbacks=[cb], resume=path, **FIT)
    assert cb.count == 3


# --------------------------------------------------------------- item 4: the optimizer's state
def sgd_state():
    opt = optim.SGD(lr=0.1, momentum=0.9)
    p, g = {"w": np.ones(3, np.float32)}, {"w": np.full(3, 0.5, np.float32)}
    opt.step(p, g)
    return opt.state_dict()


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update({"hp/evil": np.array(1.0)}), r"unknown entries \['hp/evil'\]"),
    (lambda d: d.update({"slot/m/w": np.zeros(3)}), r"unknown entries \['slot/m/w'\]"),
    (lambda d: d.update({"path": np.array("/tmp/x")}), r"unknown entries \['path'\]"),
    (lambda d: d.pop("iterations"), r"missing entries \['iterations'\]"),
    (lambda d: d.update({"iterations": np.array(2.5)}), "'iterations' must be an integer"),
    (lambda d: d.update({"hp/lr": np.array("0.1")}), "'hp/lr' must be a number"),
    (lambda d: d.update({"hp/lr": np.array(np.nan)}), "'hp/lr'"),
    (lambda d: d.update({"hp/momentum": np.array(1.5)}), "'hp/momentum'"),
    (lambda d: d.update({"hp/nesterov": np.array(1.0)}), "'hp/nesterov' must be a boolean"),
    (lambda d: d.update({"slot/velocity/w": np.array(["a", "b"])}), "'slot/velocity/w' must be a float array"),
])
def test_optimizer_restores_declared_entries_only(change, match):
    d = sgd_state()
    change(d)
    opt = optim.SGD(lr=0.3)
    with pytest.raises(ValueError, match="SGD.load_state_dict: " + match):
        opt.load_state_dict(d)
    assert opt.lr == 0.3 and opt.iterations == 0 and opt.slots == {}  # nothing applied


def test_optimizer_round_trip_still_exact():
    for opt in (optim.SGD(lr=0.1, momentum=0.9, nesterov=True, clip_norm=1.0), optim.Adam(), optim.AdamW(),
                optim.RMSProp(), optim.AdaGrad()):
        p, g = {"w": np.ones(3)}, {"w": np.full(3, 0.5)}
        opt.step(p, g)
        fresh = type(opt)()
        fresh.load_state_dict(opt.state_dict())
        assert fresh.get_config() == opt.get_config() and fresh.iterations == 1
        for slot, per in opt.slots.items():
            np.testing.assert_array_equal(fresh.slots[slot]["w"], per["w"])


def test_a_bad_optimizer_state_in_a_file_names_it(tmp_path):
    path = checkpoint(tmp_path)
    rewrite(path, edit_arrays=lambda a: a.update({"opt/iterations": np.array("many")}))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'iterations'"):
        corenet.load(path)
    x, y = data()
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'iterations'"):
        small().fit(x, y, epochs=2, resume=path, **FIT)


# ------------------------------------------------------------ item 6: malformed files are named
def drop(*keys):
    def edit(meta):
        node = meta
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
        return meta
    return edit


def put(value, *keys):
    def edit(meta):
        node = meta
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
        return meta
    return edit


@pytest.mark.parametrize("edit, match", [
    (lambda m: [1, 2], "__meta__ must be a JSON object"),
    (put("1", "version"), "version must be an integer"),
    (put(None, "version"), "version must be an integer"),
    (drop("optimizer"), "no optimizer"),
    (drop("optimizer_state"), "no optimizer_state"),
    (drop("compile", "loss"), "without a loss"),
    (put([1, 2], "train_state"), "train_state must be a dict"),
    (put("nope", "compile", "loss"), "unknown loss 'nope'"),
    (put({"class": "Nope", "config": {}}, "compile", "loss"), "loss class 'Nope'"),
    (put({"class": "Loss", "config": {}}, "compile", "loss"), "loss class 'Loss'"),
    (put({"class": "CrossEntropy", "config": {"path": "x"}}, "compile", "loss"), "CrossEntropy settings"),
    (put({"class": "get", "config": {}}, "optimizer"), "optimizer 'get'"),
    (put({"class": "Optimizer", "config": {}}, "optimizer"), "optimizer 'Optimizer'"),
    (put("seven", "train_state", "epoch"), "'epoch' must be an integer"),
    (put({"ok": 1}, "train_state", "callbacks"), "'callbacks' must be a list"),
    (put({"drop.rng": {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}}, "train_state", "rngs"),
     "random generator state of 'drop.rng'"),
    (put({"__array__": "w/fc.weight"}, "train_state", "lr"), "reference to a ts/ array"),
    (put({"__array__": "ts/nothere"}, "train_state", "lr"), "reference to a ts/ array"),
    (put("x", "train_state", "path"), "unknown \\['path'\\]"),
    (put(["accuracy", 3], "compile", "metrics"), "metrics must be a list of names"),
])
def test_malformed_headers_are_value_errors_naming_the_file(tmp_path, edit, match):
    path = rewrite(checkpoint(tmp_path), edit)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + match):
        corenet.load(path)


def test_unknown_model_class_is_refused(tmp_path):
    path = checkpoint(tmp_path)

    def edit(arrays):
        config = json.loads(str(arrays["__config__"]))
        config["class"] = "Layer"
        arrays["__config__"] = np.array(json.dumps(config))

    rewrite(path, edit_arrays=edit)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*model class 'Layer'"):
        corenet.load(path)


def test_a_npy_file_and_a_garbled_zip_are_named(tmp_path):
    npy = tmp_path / "weights.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match=re.escape(str(npy)) + ".*a .npy array"):
        corenet.load(npy)
    with pytest.raises(ValueError, match=re.escape(str(npy))):
        small().load_weights(npy)
    # a zip whose central directory names an unknown compression method (zipfile: NotImplementedError)
    garbled = tmp_path / "garbled.npz"
    blob = bytearray(checkpoint(tmp_path).read_bytes())
    at = blob.find(b"PK\x01\x02")
    while at != -1:
        blob[at + 10:at + 12] = struct.pack("<H", 99)
        at = blob.find(b"PK\x01\x02", at + 4)
    garbled.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=re.escape(str(garbled)) + ".*not a readable corenet checkpoint"):
        corenet.load(garbled)
    with pytest.raises(ValueError, match=re.escape(str(garbled))):
        corenet.io.read_checkpoint(garbled)


def test_complex_weights_are_refused(tmp_path):
    path = checkpoint(tmp_path)
    rewrite(path, edit_arrays=lambda a: a.update({"w/fc.bias": a["w/fc.bias"].astype(np.complex64)}))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'fc.bias' must hold real numbers, received dtype "
                                         "complex64"):
        corenet.load(path)


def test_zip_members_that_are_not_npy_arrays_are_named(tmp_path):
    import zipfile

    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as z:  # np.load hands such members back as raw bytes
        z.writestr("__meta__.npy", b"")
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*members \['__meta__'\] are not .npy arrays"):
        corenet.load(path)
