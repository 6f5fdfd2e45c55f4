"""Compile every kernel of corenet's cuda backend to PTX for sm_90, without a GPU.

The simulator runs kernels as Python, so it accepts code that numba's CUDA compiler rejects
(non-literal shared-array shapes, untyped builtins). This check compiles each kernel's Python
function with ``numba.cuda.compile_ptx`` and the argument types its entry point passes; it needs
libNVVM (the CUDA toolkit) but no driver. Device functions ask the driver for the target
architecture, so that one query is answered with sm_90 here.

    python tests/cuda_ptx_check.py [float32 float64]     (exit status 1 when a kernel fails)
"""

import sys

import numba
import numpy as np


def main(dtypes=("float32",)) -> int:
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda
    from numba.cuda.random import xoroshiro128p_dtype

    from corenet.kernels.cuda import _act_mobile as am
    from corenet.kernels.cuda import _igemm, _reduce, act, conv, lrn, norm, ops, pool, resample, train

    class _Sm90:
        compute_capability = (9, 0)

    dispatcher.get_current_device = lambda: _Sm90()  # no driver here: device functions target sm_90
    failures = []
    count = 0
    checked = set()

    def check(name, kernel, args):
        nonlocal count
        count += 1
        checked.add(kernel.py_func)
        sig = numba.void(*[a if isinstance(a, numba.types.Type) else numba.typeof(a) for a in args])
        try:
            cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        except Exception as exc:  # report every failing kernel, not just the first
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}")

    i, f, b = 1, 1.0, True
    for name in dtypes:
        dt = np.dtype(name).type
        x4, x3, x2, x1, v = (np.empty(s, dt) for s in ((2, 2, 2, 2), (2, 2, 2), (2, 2), 4, 2))
        f64, f64_3, i32, u8, s = np.empty(2), np.empty((2, 2, 2)), np.empty((2, 2, 2, 2), np.int32), \
            np.empty(4, np.uint8), dt(0.1)
        i64, i64_2 = np.empty(2, np.int64), np.empty((2, 2), np.int64)
        fwd, gin, gw = _igemm.kernels_for(np.dtype(dt))
        cases = [
            ("igemm.forward", fwd, [x4, x1, x2, v, b] + [i] * 9 + [x4]),
            ("igemm.grad_input", gin, [x4, x1, x4] + [i] * 7 + [x4]),
            ("igemm.grad_weight", gw, [x4, x1, x4] + [i] * 10 + [x3]),
            ("reduce._partials", _reduce._partials, [x3, x3, f64, i, i, f64_3]),
            ("reduce._finish", _reduce._finish, [f64_3, x3, i, i, f64, f64]),
            ("reduce._sum_splits", _reduce._sum_splits, [x3, x2]),
            ("conv._direct_forward", conv._direct_forward, [x4, x4, v, b] + [i] * 7 + [x4]),
            ("conv._direct_grad_input", conv._direct_grad_input, [x4, x4] + [i] * 7 + [x4]),
            ("conv._direct_grad_weight", conv._direct_grad_weight, [x4, x4] + [i] * 7 + [x4]),
            ("conv._cast", conv._cast, [f64, v]),
            ("pool._extreme_forward", pool._extreme_forward, [x4, x4, i32] + [i] * 8 + [b]),
            ("pool._extreme_backward", pool._extreme_backward, [x4, i32] + [i] * 8 + [x4]),
            ("pool._adaptive_max_forward", pool._adaptive_max_forward, [x4, x4, i32]),
            ("pool._adaptive_max_backward", pool._adaptive_max_backward, [x4, i32, x4]),
            ("pool._avg_forward", pool._avg_forward, [x4, x4] + [i] * 10 + [b, f]),
            ("pool._avg_backward", pool._avg_backward, [x4, x4] + [i] * 10 + [b, f]),
            ("pool._adaptive_forward", pool._adaptive_forward, [x4, x4]),
            ("pool._plane_avg", pool._plane_avg, [x4, x4, f]),
            ("pool._plane_extreme", pool._plane_extreme, [x4, x4, i32, b]),
            ("pool._adaptive_backward", pool._adaptive_backward, [x4, x4]),
            ("lrn._across_forward", lrn._across_forward, [x4, x4, x4, b, i, f, f, f]),
            ("lrn._across_backward", lrn._across_backward, [x4, x4, x4, x4, i, f, f]),
            ("lrn._within_forward", lrn._within_forward, [x4, x4, x4, b, i, f, f, f]),
            ("lrn._within_backward", lrn._within_backward, [x4, x4, x4, x4, i, f, f]),
            ("norm._affine", norm._affine, [x3, v, v, v, x3]),
            ("norm._backward_gx", norm._backward_gx, [x3, x3, v, v, v, v, x3]),
            ("norm._scale_gx", norm._scale_gx, [x3, v, x3]),
            ("norm._prepare", norm._prepare, [f64, f64, v, v, v, v, b, b, f, s, f, f, b, b, f64, f64, v, v, v]),
            ("norm._coeffs", norm._coeffs, [f64, f64, v, b, f64, f64, f, b, b, v, v, v, v, v, v]),
            ("act._relu_f", act._relu_f, [x1, x1]), ("act._relu_b", act._relu_b, [x1, x1, x1]),
            ("act._leaky_f", act._leaky_f, [x1, s, x1]), ("act._leaky_b", act._leaky_b, [x1, x1, s, x1]),
            ("act._elu_f", act._elu_f, [x1, f, f, x1]), ("act._elu_b", act._elu_b, [x1, x1, f, f, x1]),
            ("act._gelu_f", act._gelu_f, [x1, b, x1]), ("act._gelu_b", act._gelu_b, [x1, x1, b, x1]),
            ("act._sigmoid_f", act._sigmoid_f, [x1, x1]), ("act._sigmoid_b", act._sigmoid_b, [x1, x1, x1]),
            ("act._tanh_f", act._tanh_f, [x1, x1]), ("act._tanh_b", act._tanh_b, [x1, x1, x1]),
            ("act._dropout", act._dropout, [x1, u8, s, x1]),
            ("act._softmax_f", act._softmax_f, [x3, b, x3]), ("act._softmax_b", act._softmax_b, [x3, x3, b, x3]),
            ("act._softmax_rows_f", act._softmax_rows_f, [x3, b, x3]),
            ("act._softmax_rows_b", act._softmax_rows_b, [x3, x3, b, x3]),
            ("act._relu6_f", am._relu6_f, [x1, x1]), ("act._relu6_b", am._relu6_b, [x1, x1, x1]),
            ("act._hardsigmoid_f", am._hardsigmoid_f, [x1, x1]),
            ("act._hardsigmoid_b", am._hardsigmoid_b, [x1, x1, x1]),
            ("act._hardswish_f", am._hardswish_f, [x1, x1]), ("act._hardswish_b", am._hardswish_b, [x1, x1, x1]),
            ("act._silu_f", am._silu_f, [x1, x1]), ("act._silu_b", am._silu_b, [x1, x1, x1]),
            ("act._drop_path", am._drop_path, [x2, u8, s, x2]), ("act._shuffle", am._shuffle, [x4, x4]),
            ("train._xent_rows", train._xent_rows, [x2, np.empty(2, np.int64), f, f, f64, x2]),
            ("train._tree_sum", train._tree_sum, [f64, f64]),
            ("train._sgd", train._sgd, [x1, x1, x1, s, s, b, s]),
            ("train._adam", train._adam, [x1, x1, x1, x1] + [s] * 10),
            ("ops._add", ops._add, [x1, x1, x1]), ("ops._accumulate", ops._accumulate, [x1, x1]),
            ("ops._fill", ops._fill, [x1, s]), ("ops._copy_block", ops._copy_block, [x3, x3, i]),
            ("ops._take_block", ops._take_block, [x3, x3, i]),
            ("ops._scale", ops._scale, [x1, s]), ("ops._pad", ops._pad, [x4, i, i, x4]),
            ("ops._crop", ops._crop, [x4, i, i, x4]), ("ops._mul", ops._mul, [x1, x1, x1]),
            ("ops._mul_channels", ops._mul_channels, [x3, x2, x3]),
            ("ops._sum_mul_lanes", ops._sum_mul_lanes, [x3, x3, x2]),
            ("train._rms", train._rms, [x1, x1, x1] + [s] * 5),
            ("resample._nearest_f", resample._nearest_f, [x4, i64, i64, x4]),
            ("resample._nearest_b", resample._nearest_b, [x4, i64, i64, i64_2, i64_2, x4]),
            ("resample._bilinear_f", resample._bilinear_f, [x4, i64, i64, x2, i64, i64, x2, x4]),
            ("resample._bilinear_b", resample._bilinear_b, [x4, i64, i64, x2, i64, i64, x2, i64_2, i64_2, x4]),
        ]
        for kname, kernel, args in cases:
            check(f"{kname}[{name}]", kernel, args)
    check("act._keep_mask", act._keep_mask,
          [numba.from_dtype(xoroshiro128p_dtype)[:], numba.float32, numba.uint8[:]])
    for name in _unlisted_kernels(checked):
        failures.append(f"{name}: a kernel of corenet.kernels.cuda that this check does not compile: add it")
    for line in failures:
        print("FAIL", line)
    print(f"compiled {count - len(failures)} of {count} kernels to PTX for sm_90")
    return 1 if failures else 0


def _unlisted_kernels(checked) -> list[str]:
    """Every module-level ``@cuda.jit`` kernel (not device function) of the cuda backend whose
    Python function was not compiled above, so a new kernel cannot slip past the check."""
    import importlib
    import pkgutil

    from numba.cuda.dispatcher import CUDADispatcher

    import corenet.kernels.cuda as package

    missing = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"corenet.kernels.cuda.{info.name}")
        for attr, value in vars(module).items():
            if isinstance(value, CUDADispatcher) and not value.targetoptions.get("device") \
                    and value.py_func.__module__ == module.__name__ and value.py_func not in checked:
                missing.append(f"{info.name}.{attr}")
    return missing


if __name__ == "__main__":
    sys.exit(main(tuple(sys.argv[1:]) or ("float32",)))
