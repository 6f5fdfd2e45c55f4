"""Fuzz the public API: every outcome is a result, or corenet's own ValueError/TypeError naming the op.

Hypothesis draws calls of the functional ops and their backwards, the layers (constructed, called
eagerly, trained one step), ``Model.fit``/``predict``/``evaluate`` and ``corenet.load`` on garbage
files, from a mix of sensible and hostile arguments: wrong dtypes (int, bool, complex, object,
strings), non-arrays, empty and non-contiguous arrays, sizes up to 2**63, NaN, strings where numbers
go, another op's state. The assertion is the same for all of them (``_outcome``): no other exception
type, a message that starts with the op's name (``"conv2d: ..."``, ``"Conv2d layer 'c': ..."``), and
none of numpy's or Python's own phrases in it.

Example counts: ``BUDGET`` per test sums to 2,600 in CI (the ``ci`` profile, derandomized; about 10 s)
and ten times that, 26,000, with ``CORENET_HYPOTHESIS=thorough``. Each example makes one to three calls.
``CORENET_FUZZ_COUNTS=path`` writes the tally of outcomes (results, ValueErrors, TypeErrors) as JSON
when the module finishes; it is also printed (``pytest -s``).
"""

from __future__ import annotations

import collections
import json
import os
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corenet
from corenet import Input, Model
from corenet import functional as F
from corenet import layers as L

pytestmark = pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")

SCALE = 10 if os.environ.get("CORENET_HYPOTHESIS") == "thorough" else 1
COUNTS: collections.Counter = collections.Counter()

# Phrases of numpy's and Python's own errors: corenet's messages never carry them.
FOREIGN = re.compile(
    r"could not broadcast|operands could not|cannot reshape array|invalid literal|object of type|"
    r"not supported between|unsupported operand|zero-size array|truth value of an array|could not convert|"
    r"out of bounds|'NoneType'|is not iterable|object cannot be interpreted|must be real number|"
    r"output array is read-only|Maximum allowed size|array is too big|Unable to allocate|"
    r"argument must be|takes \d+ positional|got an unexpected keyword|has no attribute|not subscriptable"
)


BUDGET = {"functional": 1100, "layers": 800, "model": 300, "load": 400}  # examples per test in CI; x10 thorough


def _fuzz_settings(n):
    return settings(max_examples=n * SCALE, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.filter_too_much,
                                                                   HealthCheck.data_too_large])


def _outcome(prefixes, call):
    """Run ``call``; a result, or a ValueError/TypeError whose message starts with one of ``prefixes``."""
    try:
        result = call()
    except (ValueError, TypeError) as e:
        msg = str(e)
        named = any(msg.startswith(p + ":") or msg.startswith(p + " layer") for p in prefixes)
        assert named, f"{type(e).__name__} does not name the op {prefixes}: {msg!r}"
        assert not FOREIGN.search(msg), f"{type(e).__name__} carries a foreign message: {msg!r}"
        COUNTS[type(e).__name__] += 1
        return None
    COUNTS["result"] += 1
    return result


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    report = {"examples": COUNTS.pop("examples", 0), "calls": sum(COUNTS.values()), **dict(COUNTS)}
    print(f"\nfuzz outcomes: {report}")
    path = os.environ.get("CORENET_FUZZ_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)


# --------------------------------------------------------------------------------- strategies
HUGE = st.sampled_from([2**31 - 1, 2**31, 2**32, 2**40, 2**63 - 1, 2**63, 2**64, 10**6, 10**9, -(2**63)])
WILD_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 9), HUGE, st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3), st.just(np.int64(2)), st.just(np.float32(0.5)), st.just(np.bool_(True)),
    st.just(b"1"), st.just(1 + 2j),
)
WILD = st.one_of(
    WILD_SCALAR,
    st.tuples(WILD_SCALAR, WILD_SCALAR),
    st.lists(st.integers(-2, 5), max_size=4),
    st.tuples(st.tuples(st.integers(-1, 3), st.integers(-1, 3)), st.tuples(st.integers(-1, 3), HUGE)),
    st.just(np.ones(2)), st.just("same"), st.just("valid"), st.just({}),
)


def small_int(lo=1, hi=4):
    """Mostly a small valid int, sometimes anything."""
    return st.one_of(st.integers(lo, hi), st.integers(lo, hi), st.integers(lo, hi), WILD)


def number(lo=0.0, hi=2.0):
    return st.one_of(st.floats(lo, hi), st.floats(lo, hi), WILD)


DTYPES = st.sampled_from([np.float32, np.float32, np.float64, np.float64, np.float16, np.int64, np.uint8,
                          np.bool_, np.complex64, object, np.str_])


@st.composite
def arrays(draw, ndim=None, dims=(0, 4), dtype=None, finite=False):
    """An array (mostly float, small shapes, sometimes empty, strided or read-only), or sometimes not one."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=2), st.just([[1.0, 2.0]])))
    nd = draw(st.integers(0, 5)) if ndim is None else ndim
    shape = tuple(draw(st.integers(*dims)) for _ in range(nd))
    dt = draw(DTYPES) if dtype is None else dtype
    if finite:
        values = draw(st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=8))
    else:
        values = draw(st.lists(st.floats(width=32), min_size=1, max_size=8))
    n = int(np.prod(shape))
    base = np.resize(np.array(values, np.float64), n).reshape(shape)
    with np.errstate(all="ignore"):
        if np.dtype(dt).kind in "OU":
            a = base.astype(np.float32).astype(dt)
        elif np.dtype(dt).kind in "iub":
            a = np.nan_to_num(base, nan=0, posinf=1, neginf=-1).clip(-100, 100).astype(dt)
        else:
            a = base.astype(dt)
    a = np.array(a)  # a 0-d array, never a numpy scalar
    trick = draw(st.integers(0, 9))
    if trick == 0 and a.ndim:
        a = np.asfortranarray(a)
    elif trick == 1 and a.ndim and a.shape[-1] > 1:
        a = a[..., ::2]
    elif trick == 2:
        a.flags.writeable = False
    return a


def float_array(draw, shape, dtype=np.float32):
    """A standard-normal array of ``shape``, seeded by a drawn integer."""
    return np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------- functional ops
def _nchw(draw, dtype):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    return float_array(draw, shape, dtype)


@st.composite
def functional_calls(draw):
    """``(op name, thunk)`` for a forward with return_state=True, arguments mostly sensible."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = _nchw(draw, dtype) if draw(st.integers(0, 3)) else draw(arrays())
    op = draw(st.sampled_from([
        "relu", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout",
        "linear", "conv2d", "conv2d", "max_pool2d", "avg_pool2d", "min_pool2d", "sum_pool2d", "pool2d",
        "global_avg_pool2d", "global_max_pool2d", "adaptive_avg_pool2d", "local_response_norm", "batch_norm",
        "batch_norm", "conv_output_shape"]))
    fn = getattr(F, op)
    kw = {}
    if op == "leaky_relu":
        kw["negative_slope"] = draw(number(-1, 1))
    elif op == "elu":
        kw["alpha"] = draw(number(0, 2))
    elif op == "gelu":
        kw["approximate"] = draw(st.one_of(st.sampled_from(["none", "tanh"]), WILD))
    elif op in ("softmax", "log_softmax"):
        kw["axis"] = draw(st.one_of(st.integers(-4, 4), WILD))
    elif op == "dropout":
        args = (draw(number(0, 1)), draw(st.one_of(st.just(np.random.default_rng(0)), WILD)))
        training = draw(st.one_of(st.booleans(), WILD))
        return op, lambda: fn(x, *args, training=training, return_state=True)
    elif op == "linear":
        fin = x.shape[-1] if isinstance(x, np.ndarray) and x.ndim else 2
        if isinstance(x, np.ndarray) and x.ndim == 4 and x.size > 0 and draw(st.booleans()):
            x = x.reshape(x.shape[0], -1)
            fin = x.shape[1]
        fout = draw(st.integers(1, 4))
        w = float_array(draw, (fout, fin), dtype) if draw(st.integers(0, 3)) else draw(arrays())
        b = draw(st.sampled_from([None, "ok", "wild"]))
        b = None if b is None else (float_array(draw, (fout,), dtype) if b == "ok" else draw(arrays()))
        return op, lambda: fn(x, w, b, return_state=True)
    elif op in ("conv2d", "conv_output_shape"):
        groups = draw(st.one_of(st.sampled_from([1, 1, 1, 2]), WILD))
        c_in = x.shape[1] if isinstance(x, np.ndarray) and x.ndim == 4 else 2
        g = groups if isinstance(groups, int) and 1 <= groups <= 4 else 1
        c_out = g * draw(st.integers(1, 3))
        k = draw(st.integers(1, 3))
        w = (float_array(draw, (c_out, max(c_in // g, 1), k, k), dtype) if draw(st.integers(0, 3))
             else draw(arrays()))
        b = float_array(draw, (c_out,), dtype) if draw(st.booleans()) else None
        kw = {"stride": draw(small_int(1, 3)), "padding": draw(st.one_of(st.integers(0, 2), WILD)),
              "dilation": draw(small_int(1, 2)), "groups": groups}
        if op == "conv_output_shape":
            xs = x.shape if isinstance(x, np.ndarray) else x
            ws = w.shape if isinstance(w, np.ndarray) else w
            return op, lambda: fn(xs, ws, **kw)
        return op, lambda: fn(x, w, b, **kw, return_state=True)
    elif op in ("max_pool2d", "avg_pool2d", "min_pool2d", "sum_pool2d", "pool2d"):
        kw = {"kernel_size": draw(small_int(1, 3)), "stride": draw(st.one_of(st.none(), small_int(1, 3))),
              "padding": draw(st.one_of(st.integers(0, 1), WILD)), "ceil_mode": draw(st.one_of(st.booleans(), WILD))}
        if op in ("max_pool2d", "min_pool2d", "pool2d"):
            kw["dilation"] = draw(small_int(1, 2))
        if op in ("avg_pool2d", "sum_pool2d"):
            kw["divisor_override"] = draw(st.one_of(st.none(), number(0.5, 3)))
        if op == "avg_pool2d":
            kw["count_include_pad"] = draw(st.one_of(st.booleans(), WILD))
        if op == "pool2d":
            kw["mode"] = draw(st.one_of(st.sampled_from(["max", "min", "avg", "sum"]), WILD))
    elif op == "adaptive_avg_pool2d":
        kw["output_size"] = draw(st.one_of(st.integers(1, 5), st.tuples(st.integers(1, 5), st.none()), WILD))
    elif op == "local_response_norm":
        kw = {"size": draw(small_int(1, 5)), "alpha": draw(number(0, 1e-3)), "beta": draw(number(0, 1)),
              "k": draw(number(0.5, 2)), "mode": draw(st.one_of(st.sampled_from(["across", "within"]), WILD)),
              "convention": draw(st.one_of(st.sampled_from(["torch", "paper"]), WILD))}
    elif op == "batch_norm":
        C = x.shape[1] if isinstance(x, np.ndarray) and x.ndim >= 2 else 2

        def vec(dt=dtype):
            pick = draw(st.integers(0, 5))
            return None if pick == 0 else (draw(arrays()) if pick == 1 else float_array(draw, (C,), dt))
        if isinstance(x, np.ndarray) and x.ndim == 4 and x.size > 0 and draw(st.booleans()):
            x = x.reshape(x.shape[0], -1)
            C = x.shape[1]
        rm, rv = vec(np.float32), vec(np.float32)
        if isinstance(rv, np.ndarray) and rv.dtype.kind == "f":
            rv = np.abs(rv)
        if isinstance(rm, np.ndarray) and draw(st.integers(0, 5)) == 0:
            rm.flags.writeable = False
        args = (vec(), vec(), rm, rv, draw(st.one_of(st.booleans(), WILD)))
        kw = {"momentum": draw(number(0, 1)), "eps": draw(number(1e-6, 1e-3))}
        return op, lambda: fn(x, *args, **kw, return_state=True)
    return op, lambda: fn(x, **kw, return_state=True)


BACKWARD = {"relu": F.relu_backward, "leaky_relu": F.leaky_relu_backward, "elu": F.elu_backward,
            "selu": F.selu_backward, "gelu": F.gelu_backward, "sigmoid": F.sigmoid_backward,
            "tanh": F.tanh_backward, "softmax": F.softmax_backward, "log_softmax": F.log_softmax_backward,
            "dropout": F.dropout_backward, "linear": F.linear_backward, "conv2d": F.conv2d_backward,
            "local_response_norm": F.local_response_norm_backward, "batch_norm": F.batch_norm_backward}
OTHER_STATE = F.relu(np.ones((1, 2), np.float32), return_state=True)[1]


def _backward_name(op):
    return op + "_backward" if op in BACKWARD else "pool2d_backward"


@given(call=functional_calls(), st_pick=st.integers(0, 9), gy_pick=st.integers(0, 5), data=st.data())
@_fuzz_settings(BUDGET["functional"])
def test_functional_ops_and_backwards(call, st_pick, gy_pick, data):
    COUNTS["examples"] += 1
    op, thunk = call
    out = _outcome((op,), thunk)
    if out is None or op == "conv_output_shape":
        return
    y, state = out
    if st_pick == 0:
        state = OTHER_STATE if op != "relu" else {}
    elif st_pick == 1:
        state = data.draw(WILD)
    if gy_pick == 0:
        gy = data.draw(arrays())
    elif gy_pick == 1 and y.size:
        gy = np.ones(y.shape[:-1] + (y.shape[-1] + 1,), y.dtype)
    else:
        gy = np.ones_like(y)
    bw = BACKWARD.get(op, F.pool2d_backward)
    _outcome((_backward_name(op),), lambda: bw(gy, state))


# ------------------------------------------------------------------------------------- layers
@st.composite
def layer_calls(draw):
    """``(class name, constructor thunk)`` with mostly sensible arguments."""
    name = draw(st.sampled_from([
        "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "MinPool2d", "SumPool2d", "GlobalAvgPool2d",
        "GlobalMaxPool2d", "AdaptiveAvgPool2d", "LocalResponseNorm", "BatchNorm2d", "BatchNorm1d", "Dropout",
        "ReLU", "LeakyReLU", "ELU", "SELU", "GELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Flatten",
        "Reshape", "ZeroPad2d", "Add", "Multiply", "Concat"]))
    cls = getattr(L, name)
    args, kw = (), {}
    if name == "Conv2d":
        args = (draw(small_int(1, 4)), draw(small_int(1, 3)))
        kw = {"stride": draw(small_int(1, 2)), "padding": draw(st.one_of(st.integers(0, 1), WILD)),
              "groups": draw(st.one_of(st.just(1), WILD))}
    elif name == "Linear":
        args = (draw(small_int(1, 4)),)
    elif name in ("MaxPool2d", "AvgPool2d", "MinPool2d", "SumPool2d"):
        args = (draw(small_int(1, 3)),)
        kw = {"stride": draw(st.one_of(st.none(), small_int(1, 2))), "padding": draw(st.one_of(st.just(0), WILD)),
              "ceil_mode": draw(st.one_of(st.booleans(), WILD))}
    elif name == "AdaptiveAvgPool2d":
        args = (draw(st.one_of(st.integers(1, 4), st.lists(st.one_of(st.integers(1, 3), st.none()), min_size=2,
                                                              max_size=2), WILD)),)
    elif name == "LocalResponseNorm":
        args = (draw(small_int(1, 5)),)
        kw = {"alpha": draw(number(0, 1e-3)), "k": draw(number(0.5, 2)),
              "mode": draw(st.one_of(st.just("across"), st.just("within"), WILD))}
    elif name in ("BatchNorm2d", "BatchNorm1d"):
        kw = {"num_features": draw(st.one_of(st.none(), small_int(1, 4))), "eps": draw(number(1e-6, 1e-3)),
              "momentum": draw(number(0, 1))}
    elif name == "Dropout":
        args = (draw(number(0, 1)),)
    elif name == "LeakyReLU":
        args = (draw(number(-1, 1)),)
    elif name == "ELU":
        args = (draw(number(0, 2)),)
    elif name == "GELU":
        args = (draw(st.one_of(st.just("tanh"), WILD)),)
    elif name in ("Softmax", "LogSoftmax", "Concat"):
        kw = {"axis": draw(st.one_of(st.integers(-3, 3), WILD))}
    elif name == "Reshape":
        args = (draw(st.one_of(st.just((-1,)), st.just((2, -1)), st.lists(st.integers(-1, 4), max_size=3), WILD)),)
    elif name == "ZeroPad2d":
        args = (draw(st.one_of(st.integers(0, 2), WILD)),)
    if draw(st.integers(0, 9)) == 0:
        kw[draw(st.sampled_from(["name", "trainable", "lr_mult", "seed"]))] = draw(WILD)
    return name, lambda: cls(*args, **kw)


_LAYER_OPS = {"Conv2d": ("conv2d",), "Linear": ("linear",), "BatchNorm2d": ("batch_norm",),
              "BatchNorm1d": ("batch_norm",), "Dropout": ("dropout",), "LocalResponseNorm": ("local_response_norm",),
              "MaxPool2d": ("pool2d",), "AvgPool2d": ("pool2d",), "MinPool2d": ("pool2d",), "SumPool2d": ("pool2d",),
              "GlobalAvgPool2d": ("global_avg_pool2d", "pool2d"), "GlobalMaxPool2d": ("global_max_pool2d", "pool2d"),
              "AdaptiveAvgPool2d": ("adaptive_avg_pool2d", "pool2d")}


@given(call=layer_calls(), data=st.data())
@_fuzz_settings(BUDGET["layers"])
def test_layers_construct_call_and_train(call, data):
    COUNTS["examples"] += 1
    name, make = call
    prefixes = (name, *_LAYER_OPS.get(name, ()))
    layer = _outcome(prefixes, make)
    if layer is None:
        return
    if getattr(layer, "op", ""):  # activations: the functional op they run
        prefixes += (layer.op,)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    multi = layer.multi_input
    if data.draw(st.integers(0, 3)):
        shape = data.draw(st.sampled_from([(2, 3, 4, 4), (2, 4), (1, 2, 3, 3), (3, 1, 5, 2), (2, 6)]))
        x = float_array(data.draw, shape, dtype)
        if multi:
            other = x if data.draw(st.integers(0, 3)) else float_array(data.draw, data.draw(
                st.sampled_from([shape, (1, *shape[1:]), (shape[0], 1, *shape[2:])])), dtype)
            x = [x, other]
    else:
        x = data.draw(arrays())
        x = [x, data.draw(arrays())] if multi and data.draw(st.booleans()) else x
    y = _outcome(prefixes, lambda: layer(x))
    if y is None:
        return
    # one training step on the same arrays: forward with state, backward with an upstream gradient
    y = _outcome(prefixes, lambda: layer.forward(x, training=True))
    if y is None:
        return
    gy = np.ones_like(y) if data.draw(st.integers(0, 4)) else data.draw(arrays())
    _outcome(prefixes + tuple(op + "_backward" for op in prefixes[1:]), lambda: layer.backward(gy))


# ---------------------------------------------------------------------------------- models
def _model(kind):
    if kind == "mlp":
        x = Input((4,))
        out = L.Linear(3)(L.ReLU()(L.BatchNorm1d()(L.Linear(5)(x))))
        model = Model(x, out, seed=0)
    else:
        x = Input((2, 5, 5))
        h = L.MaxPool2d(2)(L.ReLU()(L.Conv2d(3, 3, padding=1)(x)))
        model = Model(x, L.Linear(3)(L.Flatten()(L.Dropout(0.2)(h))), seed=0)
    model.compile(corenet.optim.SGD(lr=0.01), "cross_entropy")
    return model


MODELS = {}


@st.composite
def model_calls(draw):
    kind = draw(st.sampled_from(["mlp", "cnn"]))
    model = MODELS.setdefault(kind, _model(kind))
    sample = (4,) if kind == "mlp" else (2, 5, 5)
    n = draw(st.integers(0, 9))
    if draw(st.integers(0, 3)):
        dtype = draw(st.sampled_from([np.float32, np.float64, np.float64, np.uint8, np.int64, np.complex64,
                                      np.bool_, object]))
        shape = (n, *sample) if draw(st.integers(0, 4)) else (n, *draw(st.lists(st.integers(1, 5), max_size=3)))
        x = np.random.default_rng(n).uniform(-3, 3, shape)
        x = (x + 1j if np.dtype(dtype).kind == "c" else x).astype(dtype)
    else:
        x = draw(arrays(finite=True))
    if draw(st.integers(0, 3)):
        y = np.arange(n if draw(st.integers(0, 5)) else n + 1) % 3
        y = y.astype(draw(st.sampled_from([np.int64, np.int32, np.float32, np.uint8, object, np.str_,
                                           np.complex128])))
    else:
        y = draw(st.one_of(arrays(finite=True), WILD))
    batch_size = draw(st.one_of(st.integers(1, 6), WILD))
    method = draw(st.sampled_from(["fit", "predict", "evaluate", "train_on_batch"]))
    if method == "predict":
        return method, model, lambda: model.predict(x, batch_size=batch_size)
    if method == "evaluate":
        return method, model, lambda: model.evaluate(x, y, batch_size=batch_size)
    if method == "train_on_batch":
        return method, model, lambda: model.train_on_batch(x, y)
    kw = {"epochs": draw(st.one_of(st.integers(0, 2), WILD)),
          "validation_split": draw(st.one_of(st.just(0.0), st.floats(0, 0.9), WILD)),
          "seed": draw(st.one_of(st.just(0), WILD))}
    return method, model, lambda: model.fit(x, y, batch_size=batch_size, verbose=0, **kw)


@given(call=model_calls())
@_fuzz_settings(BUDGET["model"])
def test_model_fit_predict_evaluate(call):
    COUNTS["examples"] += 1
    method, model, thunk = call
    # a batch of one sample cannot be normalised in training: batch_norm's own error, from inside fit
    _outcome((method, model.name, "cross_entropy", "batch_norm"), thunk)


# ------------------------------------------------------------------------------ checkpoints
_CKPT = {}


def _checkpoint(tmp_dir):
    """A real checkpoint (model, Adam state, training state with a dropout generator), read once."""
    if "bytes" not in _CKPT:
        model = _model("cnn")
        model.compile("adam", "cross_entropy")
        x = np.random.default_rng(0).standard_normal((6, 2, 5, 5)).astype(np.float32)
        model.fit(x, np.arange(6) % 3, epochs=1, verbose=0, seed=0)
        path = os.path.join(tmp_dir, "real.npz")
        model.save(path)
        with open(path, "rb") as f:
            _CKPT["bytes"] = f.read()
        with np.load(path, allow_pickle=False) as z:
            _CKPT["arrays"] = {k: z[k] for k in z.files}
    return _CKPT["bytes"], _CKPT["arrays"]


# ints small or absurd, never mid-sized: a mutated layer size of 10**8 would be a legitimate 400 MB allocation
JSON_INT = st.one_of(st.integers(-3, 5), st.sampled_from([2**31, 2**40, 2**63, 2**65, -(2**40)]))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), JSON_INT, st.floats(), st.text(max_size=4)),
                    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)),
                    max_leaves=6)


def _mutate(obj, data):
    """Replace one node of a JSON structure (or the whole) by a drawn JSON value."""
    if not isinstance(obj, (dict, list)) or not obj or data.draw(st.integers(0, 4)) == 0:
        return data.draw(JSON)
    if isinstance(obj, dict):
        key = data.draw(st.sampled_from(sorted(obj)))
        if data.draw(st.integers(0, 5)) == 0:
            return {k: v for k, v in obj.items() if k != key}
        return {**obj, key: _mutate(obj[key], data)}
    i = data.draw(st.integers(0, len(obj) - 1))
    return [*obj[:i], _mutate(obj[i], data), *obj[i + 1:]]


@given(data=st.data())
@_fuzz_settings(BUDGET["load"])
def test_load_garbage_files(tmp_path_factory, data):
    COUNTS["examples"] += 1
    tmp = str(tmp_path_factory.getbasetemp())
    raw, arrays_ = _checkpoint(tmp)
    path = os.path.join(tmp, "fuzzed.npz")
    kind = data.draw(st.sampled_from(["bytes", "truncate", "flip", "meta", "config", "arrays", "npy", "zip"]))
    if kind == "bytes":
        blob = data.draw(st.binary(max_size=64))
    elif kind == "truncate":
        blob = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        blob = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        blob = bytes(blob)
    if kind in ("bytes", "truncate", "flip"):
        with open(path, "wb") as f:
            f.write(blob)
    elif kind in ("meta", "config"):
        key = "__meta__" if kind == "meta" else "__config__"
        content = _mutate(json.loads(str(arrays_[key])), data)
        np.savez(path, **{**arrays_, key: np.array(json.dumps(content))})
    elif kind == "arrays":
        out = dict(arrays_)
        key = data.draw(st.sampled_from(sorted(out)))
        choice = data.draw(st.integers(0, 3))
        if choice == 0:
            del out[key]
        elif choice == 1 and out[key].dtype.kind != "U":
            out[key] = out[key].astype(data.draw(st.sampled_from([np.complex64, np.float16, np.int8, np.bool_,
                                                                  np.str_])))
        else:
            out[key] = np.zeros(data.draw(st.lists(st.integers(0, 3), max_size=3)), np.float32)
        np.savez(path, **out)
    elif kind == "npy":
        path = os.path.join(tmp, "fuzzed.npy")
        np.save(path, np.zeros(data.draw(st.integers(0, 3)), np.float32))
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(data.draw(st.sampled_from(["__meta__.npy", "x.npy", "a/b"])), data.draw(st.binary(max_size=80)))
    _outcome(("load", "load_weights"), lambda: corenet.load(path))


def test_budget_meets_the_issue():
    """The per-test budgets sum to >= 2,000 examples (CI) and >= 20,000 (thorough)."""
    assert sum(BUDGET.values()) >= 2_000 and SCALE in (1, 10)
