"""Pictures of training: learning curves, first-layer filters, feature maps (PNG files via matplotlib).

>>> history = model.fit(x, y, validation_split=0.1, epochs=10)
>>> history.plot("curves.png")                                   # same as viz.plot_history(history, ...)
>>> viz.plot_filters(model, "filters.png")                       # the first convolution's kernels
>>> viz.plot_feature_maps(model, x[0], "maps.png", filters=True) # what ``corenet visualize`` writes

Needs the ``viz`` extra (``pip install 'corenet[viz]'``, matplotlib), imported only when a picture is
drawn. Figures are built with ``matplotlib.figure.Figure`` and written straight to a file, so pyplot's
global state and the interactive backend are never touched (works on a machine without a display).
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["plot_history", "plot_filters", "plot_feature_maps", "available"]

#: Layer types whose outputs ``plot_feature_maps`` draws (4-D spatial maps).
MAP_LAYERS = ("Conv2d", "MaxPool2d", "AvgPool2d", "MinPool2d", "SumPool2d")
_MAX_COLS = 16  # panels per row
_CELL, _GAP, _TITLE = 56, 6, 16  # pixels: a panel's longer side, the space between panels, a title band


def available() -> bool:
    """Whether matplotlib can be imported (the ``viz`` extra is installed)."""
    try:
        _figure("corenet.viz")
    except ImportError:
        return False
    return True


def _figure(what: str):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"{what} needs matplotlib to draw: pip install 'corenet[viz]' "
                          "(or pip install matplotlib)") from e
    return Figure


def _save(fig, path, dpi=80, tight=True) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    # the format follows the file name (.png, .pdf, .svg)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    return path


# ------------------------------------------------------------------------------ learning curves
def plot_history(history, path) -> str:
    """Loss and every logged metric per epoch, training and validation, one panel each; returns ``path``.

    ``history`` is what ``Model.fit`` returns (a ``History``, or its ``.history`` dict): keys such as
    ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``. ``lr`` is left out, and so is a quantity
    logged in fewer epochs than the first one drawn. A validation curve is drawn where ``val_<key>``
    was logged every epoch.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise TypeError(f"plot_history: expected a History or its .history dict, received {type(history).__name__}")
    keys = [k for k in logs if not k.startswith("val_") and k != "lr" and len(logs[k])]
    if "loss" in keys:
        keys.remove("loss")
        keys.insert(0, "loss")
    if not keys:
        raise ValueError(f"plot_history: the history holds no epochs to draw (keys: {sorted(logs)})")
    n = len(logs[keys[0]])
    keys = [k for k in keys if len(logs[k]) == n]
    done = list(getattr(history, "epoch", []) or [])
    epochs = np.asarray(done) + 1 if len(done) == n else np.arange(1, n + 1)
    Figure = _figure("plot_history")
    fig = Figure(figsize=(4.5 * len(keys), 3.5), layout="constrained")
    for ax, key in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys):
        ax.plot(epochs, logs[key], marker="o", markersize=3, label="training")
        if len(logs.get(f"val_{key}", [])) == n:
            ax.plot(epochs, logs[f"val_{key}"], marker="o", markersize=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
        if n < 12:
            ax.set_xticks(epochs)
    return _save(fig, path)


# ------------------------------------------------------------------------------ filters and feature maps
def _unit(a: np.ndarray) -> np.ndarray:
    """Min-max scaled to [0, 1] for display (a constant array becomes 0.5)."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = a.min(), a.max()
    return np.full_like(a, 0.5) if hi - lo <= 0 else (a - lo) / (hi - lo)


def _picture(chw: np.ndarray):
    """(C, H, W) -> what imshow draws: RGB (H, W, 3) for 3 channels, else the first channel (gray)."""
    if chw.shape[0] == 3:
        return _unit(chw).transpose(1, 2, 0), None
    return _unit(chw[0]), "gray"


def _first_conv(model, layer=None):
    if layer is not None:
        found = model.get_layer(layer) if isinstance(layer, str) else layer
        if "weight" not in getattr(found, "params", {}) or np.ndim(found.params["weight"]) != 4:
            raise ValueError(f"plot_filters: layer {getattr(found, 'name', found)!r} holds no 4-D convolution "
                             f"weight (expected a Conv2d)")
        return found
    for candidate in model.layers:
        if type(candidate).__name__ == "Conv2d":
            return candidate
    raise ValueError(f"plot_filters: model {model.name!r} has no Conv2d layer; received layers "
                     f"{[type(la).__name__ for la in model.layers][:8]}")


def _filter_section(model, layer, max_filters):
    conv = _first_conv(model, layer)
    w = np.asarray(conv.params["weight"])  # (C_out, C_in / groups, kH, kW)
    shown = w[:max_filters]
    if w.shape[1] == 3:
        panels, cmap, how = [_unit(f).transpose(1, 2, 0) for f in shown], None, "RGB"
    elif w.shape[1] == 1:
        panels, cmap, how = [_unit(f[0]) for f in shown], "gray", ""
    else:
        panels, cmap, how = [_unit(f.mean(axis=0)) for f in shown], "gray", f"mean of {w.shape[1]} input channels"
    title = f"{conv.name} filters {w.shape[2]}x{w.shape[3]}" + (f", {how}" if how else "")
    if len(shown) < len(w):
        title += f" (first {len(shown)} of {len(w)})"
    return title, panels, cmap


def _map_sections(model, image, layers, max_layers, max_maps):
    if len(model.inputs) != 1:
        raise ValueError(f"plot_feature_maps: needs a single-input model; {model.name!r} has {len(model.inputs)}")
    want = tuple(model.input.shape)  # symbolic shapes leave out the batch axis
    image = np.asarray(image)
    if image.shape != want:
        raise ValueError(f"plot_feature_maps: image must have the model's input shape (C, H, W) = {want}; "
                         f"received shape {image.shape}")
    if layers is None:
        taps = [la for la in model.layers if type(la).__name__ in MAP_LAYERS][:max_layers]
    else:
        taps = [model.get_layer(la) if isinstance(la, str) else la for la in layers]
    for la in taps:
        if len(la.output.shape) != 3:
            raise ValueError(f"plot_feature_maps: layer {la.name!r} gives samples of shape {la.output.shape}, "
                             f"expected (C, H, W) feature maps")
    if not taps:
        raise ValueError(f"plot_feature_maps: model {model.name!r} has no {'/'.join(MAP_LAYERS)} layer to draw")
    batch = image[None].astype(model.input.dtype, copy=False)
    maps = [model.cut(la).predict(batch, batch_size=1) for la in taps]  # sub-models sharing the layers
    picture, cmap = _picture(image)
    sections = [(f"input {image.shape[0]}x{image.shape[1]}x{image.shape[2]}", [picture], cmap)]
    for la, m in zip(taps, maps):
        c = m.shape[1]
        title = f"{la.name} {c}x{m.shape[2]}x{m.shape[3]}" + (f" (first {max_maps})" if c > max_maps else "")
        sections.append((title, [np.asarray(m[0, i]) for i in range(min(c, max_maps))], "viridis"))
    return sections


def _resample(panel: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (h, w) or (h, w, 3) panel: small kernels grow into visible squares."""
    rows = np.arange(height) * panel.shape[0] // height
    cols = np.arange(width) * panel.shape[1] // width
    return panel[rows][:, cols]


def _mosaic(sections):
    """The sections as one RGB picture: each panel coloured and fitted into a ``_CELL``-pixel square, wrapped
    at ``cols`` per row, a title band above each section. Returns (picture, [(x, y, title), ...])."""
    from matplotlib import colormaps

    cols = min(_MAX_COLS, max(len(panels) for _, panels, _ in sections))
    step = _CELL + _GAP
    height = sum(_TITLE + math.ceil(len(panels) / cols) * step for _, panels, _ in sections)
    picture = np.ones((height, cols * step - _GAP + 2 * _GAP, 3))
    titles, top = [], 0
    for title, panels, cmap in sections:
        titles.append((_GAP, top + _TITLE - 3, title))
        top += _TITLE
        for i, panel in enumerate(panels):
            h, w = panel.shape[:2]
            scale = _CELL / max(h, w)
            th, tw = max(1, round(h * scale)), max(1, round(w * scale))
            cell = _resample(panel, th, tw)
            rgb = cell if cell.ndim == 3 else colormaps[cmap](_unit(cell))[..., :3]  # each panel its own range
            y0, x0 = top + (i // cols) * step, _GAP + (i % cols) * step
            picture[y0:y0 + th, x0:x0 + tw] = rgb
        top += math.ceil(len(panels) / cols) * step
    return picture, titles


def _draw(sections, path, what: str) -> str:
    """One picture, one Axes: building an Axes per panel costs matplotlib ~40 ms each (seconds for a ResNet)."""
    Figure = _figure(what)
    picture, titles = _mosaic(sections)
    dpi = 100
    fig = Figure(figsize=(picture.shape[1] / dpi, picture.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    for x, y, title in titles:
        ax.text(x, y, title, fontsize=8, va="bottom", ha="left")
    return _save(fig, path, dpi=dpi, tight=False)


def plot_filters(model, path, layer=None, max_filters=32) -> str:
    """The kernels of the first ``Conv2d`` (or of ``layer``), one panel each; returns ``path``.

    Each kernel is min-max scaled on its own. Three input channels are drawn as an RGB picture, one as
    gray, more as the gray mean over the input channels.
    """
    return _draw([_filter_section(model, layer, max_filters)], path, "plot_filters")


def plot_feature_maps(model, image, path, layers=None, max_layers=4, max_maps=16, filters=False) -> str:
    """One image's feature maps through the first layers; returns ``path``.

    ``image`` is one (C, H, W) input, preprocessed as the model was trained (``corenet.data.decode_image``
    with the checkpoint's ``model.preprocess``). Drawn: the input, then the outputs of ``layers`` (names
    or layers; default the first ``max_layers`` convolution and pooling layers), at most ``max_maps``
    channels each, in inference mode. ``filters=True`` adds the first convolution's kernels on top (the
    picture ``corenet visualize`` writes).
    """
    sections = _map_sections(model, image, layers, max_layers, max_maps)
    if filters:
        sections.insert(1, _filter_section(model, None, 2 * _MAX_COLS))
    return _draw(sections, path, "plot_feature_maps")
