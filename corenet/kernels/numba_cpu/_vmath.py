"""Branch-free exp, expm1, tanh and erf for the activation kernels (Numba CPU), vectorisable.

Design
------
``math.exp``/``tanh``/``erf`` on float32 compile to scalar libm calls (this build of Numba has no
SVML), so a loop calling them never vectorises: sigmoid, silu, tanh, gelu and elu cost 7-50 ms on
3.2M float32 elements where relu costs 0.5. The float32 versions here are arithmetic, selects and
integer bit moves only, the same formulas, operation for operation, as the Cython backend's
``corenet/_ext/act_math.h`` (its comment derives them): Cephes' expf with the power of two built
from the bits of ``v*log2(e) + 1.5*2**23`` (so no float-to-int conversion sees a NaN) and applied as
two halves (subnormal results rounded once, overflow to inf), ``expm1`` of non-positive arguments
as ``2**k * expm1(r) + (2**k - 1)``, ``tanh(v) = sign(v) * -t / (t + 2)`` with
``t = expm1(-2|v|)``, and Abramowitz-Stegun 7.1.26 for erf (PyTorch's vectorised float32 erf).

``vexp``, ``vexpm1_neg``, ``vtanh``, ``verf`` dispatch on the argument's type at compile time:
float32 takes these, float64 ``math``'s functions. The float32 helpers are compiled without
fastmath whatever ``config.get_fastmath()`` says (reassociation would fold ``(t + magic) - magic``
into ``t``: sigmoid and tanh were off by 41% and 100% with ``CORENET_FASTMATH=1``), as functions of
their own that LLVM inlines into the kernel's loop.

Numba's on-disk cache keys a kernel by its own source file only: after editing this module, touch
``act.py`` and ``_act_mobile.py`` (or empty their ``__pycache__``) so their kernels recompile.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

__all__ = ["vexp", "vexpm1_neg", "vtanh", "verf", "vsigmoid"]

# No fastmath, ever (see above): said explicitly, since a function called from a kernel otherwise
# inherits the kernel's flags. The helpers are inlined into each other and into the dispatching
# function in Numba's IR (four nested calls left to LLVM stay calls, and the loop that makes them
# stays scalar); the dispatching function is compiled without fastmath too, and LLVM inlines it
# into the kernel's loop with its instructions' (strict) flags.
strict = numba.njit(cache=True, nogil=True, inline="always", fastmath=False)

_F = np.float32
_ZERO, _HALF, _ONE, _TWO = _F(0.0), _F(0.5), _F(1.0), _F(2.0)
_MAGIC = _F(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer in the low mantissa bits
_MAGIC_BITS = 0x4B400000
_LOG2E = _F(1.44269504088896341)
_LN2_HI, _LN2_LO = _F(0.693359375), _F(-2.12194440e-4)  # k * _LN2_HI is exact for |k| < 2**15
_P = (_F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3), _F(4.1665795894e-2),
      _F(1.6666665459e-1), _F(5.0000001201e-1))
_P0, _P1, _P2, _P3, _P4, _P5 = _P
_EXP_LO, _EXP_HI, _EXPM1_LO = _F(-104.0), _F(89.0), _F(-30.0)
_ERF_P = _F(0.3275911)
_A1, _A2, _A3, _A4, _A5 = _F(0.254829592), _F(-0.284496736), _F(1.421413741), _F(-1.453152027), _F(1.061405429)


def _pow2(builder, k):
    """The float32 ``2**k`` of an i32 ``k`` in the normal range."""
    i32 = ir.IntType(32)
    bits = builder.shl(builder.add(k, ir.Constant(i32, 127)), ir.Constant(i32, 23))
    return builder.bitcast(bits, ir.FloatType())


def _k_of(builder, km):
    i32 = ir.IntType(32)
    return builder.sub(builder.bitcast(km, i32), ir.Constant(i32, _MAGIC_BITS))


@intrinsic
def _scale_half_twice(typingctx, e, km):
    """``e * 2**(k >> 1) * 2**(k - (k >> 1))`` with ``k`` the integer in ``km``'s low bits."""
    if e != types.float32 or km != types.float32:
        return None

    def codegen(context, builder, signature, args):
        e, km = args
        k = _k_of(builder, km)
        k1 = builder.ashr(k, ir.Constant(ir.IntType(32), 1))
        k2 = builder.sub(k, k1)
        return builder.fmul(builder.fmul(e, _pow2(builder, k1)), _pow2(builder, k2))

    return types.float32(types.float32, types.float32), codegen


@intrinsic
def _pow2_of(typingctx, km):
    """``2**k`` with ``k`` the integer in ``km``'s low bits (a normal power of two)."""
    if km != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return _pow2(builder, _k_of(builder, args[0]))

    return types.float32(types.float32), codegen


@strict
def _reduce_f32(v):
    """``(expm1(r), km)``: ``v = k ln2 + r``, ``k`` the integer in ``km = v log2(e) + magic``."""
    km = v * _LOG2E + _MAGIC
    k = km - _MAGIC
    r = v - k * _LN2_HI
    r = r - k * _LN2_LO
    p = _P0
    p = p * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    return p * (r * r) + r, km


@strict
def expf32(v):
    v = _EXP_LO if v < _EXP_LO else v  # written so a NaN passes
    v = _EXP_HI if v > _EXP_HI else v
    em1r, km = _reduce_f32(v)
    return _scale_half_twice(em1r + _ONE, km)


@strict
def expm1f32_neg(v):
    """``expm1(v)`` for ``v <= 0`` (or NaN); -1 below -30."""
    v = _EXPM1_LO if v < _EXPM1_LO else v
    em1r, km = _reduce_f32(v)
    s = _pow2_of(km)
    return s * em1r + (s - _ONE)


@strict
def tanhf32(v):
    t = expm1f32_neg(-_TWO * abs(v))
    return math.copysign(-t / (t + _TWO), v)


@strict
def erff32(v):
    a = abs(v)
    t = _ONE / (_ONE + _ERF_P * a)
    p = _A5
    p = p * t + _A4
    p = p * t + _A3
    p = p * t + _A2
    p = p * t + _A1
    return math.copysign(_ONE - p * t * expf32(-a * a), v)


@strict
def sigmoidf32(v):
    e = expf32(-abs(v))  # never overflows
    n = _ONE if v >= _ZERO else e  # 1 / (1 + exp(-v)) for v >= 0, exp(v) / (1 + exp(v)) below
    return n / (_ONE + e)


def _sigmoid64(v):
    e = math.exp(-abs(v))
    n = 1.0 if v >= 0 else e
    return n / (1.0 + e)


def _dispatch(name, f32, f64):
    """A function for Numba code: ``f32`` on float32 arguments, ``f64`` on others."""

    def stub(v):
        raise NotImplementedError(f"{name} runs inside Numba-compiled code only")

    stub.__name__ = stub.__qualname__ = name

    @overload(stub, jit_options={"fastmath": False})  # never the calling kernel's fastmath
    def _impl(v):
        if v == types.float32:
            return lambda v: f32(v)
        return lambda v: f64(v)

    return stub


vexp = _dispatch("vexp", expf32, math.exp)
vexpm1_neg = _dispatch("vexpm1_neg", expm1f32_neg, math.expm1)
vtanh = _dispatch("vtanh", tanhf32, math.tanh)
verf = _dispatch("verf", erff32, math.erf)
vsigmoid = _dispatch("vsigmoid", sigmoidf32, strict(_sigmoid64))
