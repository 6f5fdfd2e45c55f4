"""Callbacks on scripted metric sequences: each one's decisions, epoch by epoch, and its resumable state."""

import csv
import math

import numpy as np
import pytest

from corenet import callbacks as C


class FakeOptimizer:
    def __init__(self, lr):
        self.lr = lr


class FakeModel:
    """Just what callbacks touch: an optimizer's lr, stop_training, state dicts, save calls."""

    def __init__(self, lr=0.1):
        self.optimizer = FakeOptimizer(lr)
        self.stop_training = False
        self.weights = {"w": np.zeros(3)}
        self.saved = []

    def state_dict(self):
        return self.weights

    def load_state_dict(self, d, strict=True):
        self.weights = {k: np.array(v) for k, v in d.items()}

    def save(self, path):
        self.saved.append(("model", path))

    def save_weights(self, path):
        self.saved.append(("weights", path))


def drive(cb, model, key, values, on_epoch=None):
    """Run ``cb`` over epochs whose logs[key] are ``values``; return the lr after each epoch."""
    cb.set_model(model)
    cb.on_train_begin({})
    lrs = []
    for epoch, v in enumerate(values):
        if on_epoch is not None:
            on_epoch(epoch, model)
        cb.on_epoch_begin(epoch, {})
        cb.on_epoch_end(epoch, {key: v, "lr": model.optimizer.lr})
        lrs.append(model.optimizer.lr)
        if model.stop_training:
            break
    cb.on_train_end({})
    return lrs


def test_history_records_every_key_per_epoch():
    h = C.History()
    h.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})
    h.on_epoch_end(1, {"loss": 0.5, "accuracy": 0.7})
    assert h.history == {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}
    assert h.epoch == [0, 1]


def test_reduce_lr_on_plateau_alexnet_recipe():
    # val_accuracy (mode auto -> max) improves, then stalls; patience 2 -> divide by 10 after 2 flat epochs
    cb = C.ReduceLROnPlateau(patience=2)
    assert cb.monitor == "val_accuracy" and cb.factor == 0.1 and cb.mode == "max"
    lrs = drive(cb, FakeModel(0.01), "val_accuracy", [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7])
    np.testing.assert_allclose(lrs, [0.01, 0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5])


def test_reduce_lr_min_lr_cooldown_and_min_mode():
    cb = C.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, cooldown=1, min_lr=0.03)
    assert cb.mode == "min"
    lrs = drive(cb, FakeModel(0.1), "val_loss", [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    # epoch 1: reduce (0.05), cooldown skips epoch 2, epoch 3 reduce to max(0.025, 0.03) = 0.03, then floor
    np.testing.assert_allclose(lrs, [0.1, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03])


def test_reduce_lr_min_delta_counts_tiny_gains_as_plateau():
    cb = C.ReduceLROnPlateau(monitor="val_accuracy", patience=2, min_delta=0.01)
    lrs = drive(cb, FakeModel(1.0), "val_accuracy", [0.5, 0.505, 0.509])
    np.testing.assert_allclose(lrs, [1.0, 1.0, 0.1])


def test_reduce_lr_state_roundtrip_continues_identically():
    values = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    straight = drive(C.ReduceLROnPlateau(patience=2), FakeModel(1.0), "val_accuracy", values)
    first = C.ReduceLROnPlateau(patience=2)
    model = FakeModel(1.0)
    part1 = drive(first, model, "val_accuracy", values[:3])
    second = C.ReduceLROnPlateau(patience=2)
    second.set_state(first.get_state())
    cb = second
    cb.set_model(model)
    part2 = []
    for epoch, v in enumerate(values[3:], start=3):
        cb.on_epoch_end(epoch, {"val_accuracy": v})
        part2.append(model.optimizer.lr)
    np.testing.assert_allclose(part1 + part2, straight)


def test_reduce_lr_missing_monitor_explains():
    cb = C.ReduceLROnPlateau()
    cb.set_model(FakeModel())
    with pytest.raises(KeyError, match="val_accuracy.*validation_data or validation_split"):
        cb.on_epoch_end(0, {"loss": 1.0})


def test_reduce_lr_rejects_bad_factor_and_mode():
    with pytest.raises(ValueError, match="factor"):
        C.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="mode"):
        C.ReduceLROnPlateau(mode="biggest")


def test_early_stopping_stops_after_patience():
    cb = C.EarlyStopping(monitor="val_loss", patience=2)
    model = FakeModel()
    lrs = drive(cb, model, "val_loss", [1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    assert len(lrs) == 4 and model.stop_training
    assert cb.stopped_epoch == 3 and cb.best == 0.8 and cb.best_epoch == 1


def test_early_stopping_restores_best_weights():
    cb = C.EarlyStopping(monitor="val_accuracy", patience=1, restore_best_weights=True)
    model = FakeModel()

    def set_weights(epoch, m):  # the weights of epoch e are all e
        m.weights = {"w": np.full(3, float(epoch))}

    drive(cb, model, "val_accuracy", [0.1, 0.9, 0.5, 0.95], on_epoch=set_weights)
    assert cb.stopped_epoch == 2
    np.testing.assert_array_equal(model.weights["w"], np.full(3, 1.0))  # epoch 1 was the best
    state = cb.get_state()
    np.testing.assert_array_equal(state["best_weights"]["w"], np.full(3, 1.0))


def test_early_stopping_baseline_and_start_epoch():
    cb = C.EarlyStopping(monitor="val_accuracy", patience=1, baseline=0.9)
    model = FakeModel()
    drive(cb, model, "val_accuracy", [0.5, 0.6, 0.95])
    assert model.stop_training and cb.stopped_epoch == 0
    cb = C.EarlyStopping(monitor="val_loss", patience=0, start_from_epoch=3)
    model = FakeModel()
    lrs = drive(cb, model, "val_loss", [1.0, 2.0, 3.0, 0.5, 0.6])
    assert len(lrs) == 5 and model.stop_training and cb.stopped_epoch == 4


def test_model_checkpoint_every_epoch_and_best_only():
    model = FakeModel()
    drive(C.ModelCheckpoint("ck-{epoch:02d}.npz"), model, "val_loss", [1.0, 2.0])
    assert model.saved == [("model", "ck-01.npz"), ("model", "ck-02.npz")]
    model = FakeModel()
    cb = C.ModelCheckpoint("best-{epoch}-{val_loss:.1f}.npz", save_best_only=True, save_weights_only=True)
    drive(cb, model, "val_loss", [1.0, 2.0, 0.5, 0.7])
    assert model.saved == [("weights", "best-1-1.0.npz"), ("weights", "best-3-0.5.npz")]
    assert cb.get_state() == {"best": 0.5}


def test_terminate_on_nan():
    cb = C.TerminateOnNaN()
    model = FakeModel()
    cb.set_model(model)
    cb.on_batch_end(0, {"loss": 0.3})
    assert not model.stop_training
    cb.on_batch_end(1, {"loss": math.inf})
    assert model.stop_training
    model.stop_training = False
    cb.on_batch_end(2, {"loss": float("nan")})
    assert model.stop_training


def test_csv_logger_writes_rows_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    cb = C.CSVLogger(path)
    drive(cb, FakeModel(0.5), "loss", [1.0, 0.25])
    rows = list(csv.reader(open(path)))
    assert rows == [["epoch", "loss", "lr"], ["0", "1.0", "0.5"], ["1", "0.25", "0.5"]]
    cb = C.CSVLogger(path, append=True)  # a resumed run adds rows, not a second header
    cb.set_model(FakeModel(0.5))
    cb.on_train_begin({})
    cb.on_epoch_end(2, {"lr": 0.5, "loss": 0.125})
    cb.on_train_end({})
    rows = list(csv.reader(open(path)))
    assert rows[-1] == ["2", "0.125", "0.5"] and len(rows) == 4 and rows.count(rows[0]) == 1


@pytest.mark.parametrize(
    "schedule",
    [lambda epoch, lr: 0.1 * 0.5 ** epoch, lambda epoch: 0.1 * 0.5 ** epoch],
    ids=["keras-two-args", "one-arg"],
)
def test_learning_rate_scheduler_functions(schedule):
    cb = C.LearningRateScheduler(schedule)
    model = FakeModel(1.0)
    cb.set_model(model)
    seen = []
    for epoch in range(3):
        cb.on_epoch_begin(epoch, {})
        seen.append(model.optimizer.lr)
    np.testing.assert_allclose(seen, [0.1, 0.05, 0.025])


def test_learning_rate_scheduler_with_get_lr_object_and_bad_value():
    class Halving:
        def get_lr(self, epoch):
            return 0.8 / 2 ** epoch

    cb = C.LearningRateScheduler(Halving())
    model = FakeModel(1.0)
    cb.set_model(model)
    cb.on_epoch_begin(3, {})
    assert model.optimizer.lr == 0.1
    cb = C.LearningRateScheduler(lambda epoch: float("nan"))
    cb.set_model(model)
    with pytest.raises(ValueError, match="invalid learning rate"):
        cb.on_epoch_begin(0, {})
