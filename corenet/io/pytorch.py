"""Import weights from a PyTorch ``state_dict``: pair its names with a corenet model's, check every shape.

corenet layers keep PyTorch's tensor layouts and leaf names, so importing is a matter of pairing
module paths (see :func:`load_torch_state_dict`); the file is a plain ``.npz`` read by
``corenet.io.read_checkpoint``, and torch itself is never imported.

>>> corenet.load_torch_state_dict(model, "resnet_torch.npz")     # doctest: +SKIP
"""

from __future__ import annotations

import os

import numpy as np

from .checkpoint import read_checkpoint

__all__ = ["load_torch_state_dict"]


def load_torch_state_dict(model, path_or_dict, strict: bool = True, name_map: dict | None = None) -> dict:
    """Copy weights from a PyTorch ``state_dict`` (saved with ``np.savez(path, **{k: v.numpy()})``).

    corenet layers use PyTorch's layouts and tensor names (``weight``, ``bias``, ``running_mean``,
    ``running_var``), so only the module paths differ. Names are paired by, in this order:

    1. ``name_map``: ``{torch_name: corenet_name}`` (tensor or module prefixes, e.g.
       ``{"features.0": "conv1"}``), applied first;
    2. identical names;
    3. otherwise, module by module in registration order: the k-th torch module that holds
       tensors is paired with the k-th corenet layer that holds tensors, and inside a pair the
       tensors are matched by their leaf name. Every shape is checked.

    ``num_batches_tracked`` entries are ignored. Returns ``{corenet_name: torch_name}``. Raises
    ``ValueError`` listing every mismatch (shape, count, leaf names) with both sides' names.
    """
    if isinstance(path_or_dict, dict):
        source, torch_sd = "torch state_dict", dict(path_or_dict)
    else:
        source = repr(os.fspath(path_or_dict))
        torch_sd = read_checkpoint(path_or_dict, "load_torch_state_dict")["weights"]
    nbt = "num_batches_tracked"  # a BN counter: imported where both sides have it, never required
    torch_all = {k: np.asarray(v) for k, v in torch_sd.items()}
    torch_sd = {k: v for k, v in torch_all.items() if k.rpartition(".")[2] != nbt}
    ours_all = model.state_dict()
    ours = {k: v for k, v in ours_all.items() if k.rpartition(".")[2] != nbt}
    pairs: dict[str, str] = {}
    for t_name in list(torch_sd):
        mapped = _apply_map(t_name, name_map or {})
        if mapped is not None and mapped in ours:
            pairs[mapped] = t_name
        elif t_name in ours and not name_map:
            pairs[t_name] = t_name
    rest_t = [k for k in torch_sd if k not in pairs.values()]
    rest_o = [k for k in ours if k not in pairs]
    problems = []
    if rest_t and rest_o:
        t_mods, o_mods = _modules(rest_t), _modules(rest_o)
        for i, ((t_mod, t_leaves), (o_mod, o_leaves)) in enumerate(zip(t_mods, o_mods)):
            if sorted(t_leaves) != sorted(o_leaves):
                problems.append(f"module #{i}: torch {t_mod!r} has {sorted(t_leaves)} but corenet {o_mod!r} "
                                f"has {sorted(o_leaves)}")
                continue
            for leaf in o_leaves:
                pairs[_join(o_mod, leaf)] = _join(t_mod, leaf)
        if strict and len(t_mods) != len(o_mods):  # non-strict: trailing modules count as missing/unexpected
            problems.append(f"{len(t_mods)} torch modules with tensors vs {len(o_mods)} corenet layers "
                            f"(unpaired torch: {[m for m, _ in t_mods[len(o_mods):]]}, "
                            f"unpaired corenet: {[m for m, _ in o_mods[len(t_mods):]]})")
    for o_name, t_name in pairs.items():
        if tuple(torch_sd[t_name].shape) != tuple(ours[o_name].shape):
            problems.append(f"{t_name} {tuple(torch_sd[t_name].shape)} -> {o_name} {tuple(ours[o_name].shape)}")
    missing = [k for k in ours if k not in pairs]
    unexpected = [k for k in torch_sd if k not in pairs.values()]
    if strict and (missing or unexpected):
        problems.append(f"corenet tensors without a source: {missing}; torch tensors not used: {unexpected}")
    if problems:
        raise ValueError(f"load_torch_state_dict: {source} does not fit the model: " + " | ".join(problems))
    for o_name, t_name in list(pairs.items()):
        o_nbt, t_nbt = _join(o_name.rpartition(".")[0], nbt), _join(t_name.rpartition(".")[0], nbt)
        if o_nbt in ours_all and t_nbt in torch_all:
            pairs[o_nbt] = t_nbt
            torch_sd[t_nbt] = torch_all[t_nbt].reshape(ours_all[o_nbt].shape)
    model.load_state_dict({o: torch_sd[t] for o, t in pairs.items()}, strict=False)
    return pairs


def _apply_map(name: str, name_map: dict):
    if name in name_map:
        return name_map[name]
    module, _, leaf = name.rpartition(".")
    while module:
        if module in name_map:
            return _join(name_map[module], name[len(module) + 1:])
        module = module.rpartition(".")[0]
    return None


def _join(module: str, leaf: str) -> str:
    return f"{module}.{leaf}" if module else leaf


def _modules(names) -> list[tuple[str, list[str]]]:
    """Group tensor names by module prefix, keeping the order of first appearance."""
    groups: dict[str, list[str]] = {}
    for name in names:
        module, _, leaf = name.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    return list(groups.items())
