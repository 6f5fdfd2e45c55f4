"""Checkpoints: weights, architecture, optimizer and training state in one ``.npz``, written atomically.

The format works on plain parts (:func:`write_checkpoint`, :func:`read_checkpoint`: a state dict, JSON
config, optimizer and training state) and imports no ``Model``: ``corenet.model`` registers ``Model``
and ``Sequential`` (``checks.register_model_class``) for :func:`load` and the ONNX importer, and
``save``/``load``/``save_weights``/``load_weights`` only collect the parts from a model or apply them.

Layout of a file written by ``model.save(path)`` (a plain ``np.savez`` archive, no pickles)::

    __meta__        JSON string: format, version, kind ("model" | "weights"), compile settings,
                    optimizer class/config, training state (epoch, seed, history, RNG states,
                    callback states)
    __config__      JSON string: {"class": "Model" | "Sequential", "config": model.get_config()}
    w/<name>        every weight and buffer, by state_dict name ("conv1.weight", "bn1.running_mean")
    opt/<key>       the optimizer's ``state_dict()`` arrays
    ts/<key>        arrays of the training state (e.g. EarlyStopping's best weights)

``__meta__["preprocess"]`` (optional) is the input pipeline, ``model.preprocess``: a dict with exactly
``class_names`` (list of str), ``image_size`` ([H, W]), ``color`` ("rgb" | "gray"), ``resize``
("crop" | "stretch") and ``normalize`` (bool), as ``corenet.data.load_image_folder`` took them.
``corenet train --data folder`` sets it; in Python set ``model.preprocess = {...}`` before ``save``.
``load`` always sets ``model.preprocess`` (``None`` when the file has none), every field checked
(``checks.PREPROCESS_FIELDS``); ``corenet predict`` decodes images with it.

Writes go to a temporary file in the destination folder, are flushed and fsync'ed, then renamed
over the destination (``os.replace`` is atomic on POSIX and Windows): a crash or an exception
mid-write leaves the previous file as it was. The temporary is named
``.<name>.<host>.<pid>.<random>.tmp`` after its writer; a save first removes the temporaries of the
same destination left by writers on this host whose process is gone (a killed save), and never
those of a live process or of another host (another rank of a distributed run on a shared folder).

Files are read with ``allow_pickle=False`` and everything in them is checked before it is used: a
truncated, corrupt, foreign or malformed file raises ``ValueError`` naming it and the offending
part (``corenet.io.checks``). Classes come from explicit registries (``checks.model_classes()``,
``optimizer_classes()``, ``loss_classes()``; layers from ``corenet.layers``' registry), never from an
attribute lookup on a module. The optimizer restores only its declared hyper-parameters and slots
(``Optimizer.load_state_dict``), each callback only its declared ``state_fields``
(``Callback.set_state``), and the training state only ``checks.TRAIN_STATE_FIELDS``; nothing in a
file names a path that corenet then writes to. Weights saved from PyTorch are imported by
``corenet.io.pytorch`` (``load_torch_state_dict``); ONNX files are written
and read by ``corenet.io.onnx`` (``export_onnx``, ``import_onnx``).

>>> model.save("run.npz"); model = corenet.load("run.npz")       # doctest: +SKIP
>>> model.save_weights("w.npz"); other.load_weights("w.npz")     # doctest: +SKIP
"""

from __future__ import annotations

from .atomic import atomic_savez, remove_stale_temporaries
from .checkpoint import (
    IncompatibleKeys,
    apply_weights,
    describe,
    generators,
    load,
    load_weights,
    read_checkpoint,
    save,
    save_weights,
    set_generator_states,
    write_checkpoint,
)
from .onnx import export_onnx, import_onnx
from .pytorch import load_torch_state_dict

__all__ = [
    "save",
    "load",
    "save_weights",
    "load_weights",
    "read_checkpoint",
    "write_checkpoint",
    "atomic_savez",
    "remove_stale_temporaries",
    "apply_weights",
    "describe",
    "generators",
    "set_generator_states",
    "IncompatibleKeys",
    "load_torch_state_dict",
    "export_onnx",
    "import_onnx",
]
