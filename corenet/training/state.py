"""The training state: what ``fit(resume=...)`` and a full checkpoint carry besides the weights and the
optimizer (the completed epochs, the seed, the learning rate, every layer's random generator, the
callbacks' states, ``History`` among them).

:func:`training_state` is the one way to read it: live during ``fit`` (``model._fit_ctx``), and after
it, or as loaded from a file, the last fit's epoch, seed and callback states (``model._train_state``)
with the generators and learning rate as they are now. :func:`restore` puts a checkpoint's back.
"""

from __future__ import annotations

import os

from .. import io

__all__ = ["training_state", "restore"]


def training_state(model) -> dict | None:
    """The training state after the last completed epoch (JSON values and ndarrays), or None before any fit."""
    ctx = getattr(model, "_fit_ctx", None)
    if ctx is not None:
        base = {"epoch": ctx["epoch"], "seed": ctx["seed"],
                "callbacks": [{"class": type(cb).__name__, "state": cb.get_state()} for cb in ctx["callbacks"]]}
    else:
        base = getattr(model, "_train_state", None)
        if base is None:
            return None
    optimizer = getattr(model, "optimizer", None)
    return {
        "epoch": base["epoch"],
        "seed": base["seed"],
        "lr": float(optimizer.lr) if optimizer is not None else base["lr"],
        "rngs": {name: gen.bit_generator.state for name, gen in io.generators(model)},
        "callbacks": base["callbacks"],
    }


def restore(model, path, callbacks: list) -> dict:
    """Load the checkpoint at ``path`` into ``model`` and ``callbacks``; returns its training state.

    Every part is checked before it is applied: the training state by ``corenet.io.checks.check_train_state``
    (when the file is read), the optimizer's by ``load_state_dict`` (declared entries only), each
    callback's against its ``state_fields`` (never a path; all callbacks are checked before the model
    is touched). A bad part is a ValueError naming the file."""
    where = f"fit: {os.fspath(path)!r}"
    ckpt = io.read_checkpoint(path, "fit")
    state = ckpt["train_state"]
    if state is None or ckpt["optimizer_state"] is None:
        raise ValueError(f"fit: cannot resume from {os.fspath(path)!r}: it holds no training state "
                         "(write it with fit(..., resume=path), ModelCheckpoint or model.save after fit)")
    saved, pending = list(state["callbacks"]), []
    for cb in callbacks:  # pair by class, in order
        for i, entry in enumerate(saved):
            if entry["class"] == type(cb).__name__:
                try:
                    check = getattr(cb, "checked_state", None)  # Callback subclasses; duck-typed ones check their own
                    if check is not None:
                        check(entry["state"])
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
                pending.append((cb, entry["state"]))
                del saved[i]
                break
    io.apply_weights(model, ckpt["weights"], True, where)
    try:
        model.optimizer.load_state_dict(ckpt["optimizer_state"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None
    model.optimizer.lr = float(state["lr"])
    io.set_generator_states(model, state["rngs"], path, "fit")
    for cb, cb_state in pending:
        cb.set_state(cb_state)
    return state
