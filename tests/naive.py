"""Plain-loop oracles written straight from the definitions, in float64.

Slow on purpose: every kernel of every backend is checked against these. Each section belongs
to one op family; keep forward and backward side by side.
"""

import numpy as np

# ---------------------------------------------------------------- convolution


def _conv_geometry(x_shape, w_shape, stride, pads, dilation):
    _, _, H, W = x_shape
    _, _, kh, kw = w_shape
    t, b, l, r = pads
    ho = (H + t + b - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (W + l + r - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return ho, wo


def conv2d(x, w, bias=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Grouped 2-D cross-correlation, PyTorch's definition, with ``pads = (top, bottom, left, right)``.

    ``y[n, co, oh, ow] = bias[co] + sum_{cl, i, j} w[co, cl, i, j] * xpad[n, g*cg + cl,
    oh*sh + i*dh, ow*sw + j*dw]`` with ``g = co // (C_out/groups)``; outside the input xpad is 0.
    """
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = w.shape
    cog = C_out // groups
    ho, wo = _conv_geometry(x.shape, w.shape, stride, pads, dilation)
    y = np.zeros((N, C_out, ho, wo))
    for n in range(N):
        for co in range(C_out):
            g = co // cog
            for cl in range(cg):
                for oh in range(ho):
                    for ow in range(wo):
                        for i in range(kh):
                            for j in range(kw):
                                ih = oh * stride[0] - pads[0] + i * dilation[0]
                                iw = ow * stride[1] - pads[2] + j * dilation[1]
                                if 0 <= ih < H and 0 <= iw < W:
                                    y[n, co, oh, ow] += float(w[co, cl, i, j]) * float(x[n, g * cg + cl, ih, iw])
            if bias is not None:
                y[n, co] += float(bias[co])
    return y


def im2col(x, kh, kw, stride, pads, dilation, out_hw):
    """The column matrix ``(C*kh*kw, N*ho*wo)`` of the CPU backends' ``im2col`` primitive: row
    ``(c*kh + i)*kw + j``, column ``(n*ho + oh)*wo + ow``, zero where the tap falls in the padding."""
    N, C, H, W = x.shape
    (sh, sw), (pt, pl), (dh, dw), (ho, wo) = stride, pads, dilation, out_hw
    col = np.zeros((C * kh * kw, N * ho * wo), dtype=x.dtype)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                for n in range(N):
                    for oh in range(ho):
                        for ow in range(wo):
                            ih, iw = oh * sh - pt + i * dh, ow * sw - pl + j * dw
                            if 0 <= ih < H and 0 <= iw < W:
                                col[(c * kh + i) * kw + j, (n * ho + oh) * wo + ow] = x[n, c, ih, iw]
    return col


def conv2d_backward(x, w, gy, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """``(gx, gw, gb)`` of :func:`conv2d` for upstream gradient ``gy``: the same loops, each
    product's contribution sent back to both of its factors."""
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = w.shape
    cog = C_out // groups
    ho, wo = gy.shape[2:]
    gx = np.zeros(x.shape)
    gw = np.zeros(w.shape)
    gb = np.zeros(C_out)
    for n in range(N):
        for co in range(C_out):
            g = co // cog
            for oh in range(ho):
                for ow in range(wo):
                    gb[co] += float(gy[n, co, oh, ow])
            for cl in range(cg):
                c = g * cg + cl
                for oh in range(ho):
                    for ow in range(wo):
                        for i in range(kh):
                            for j in range(kw):
                                ih = oh * stride[0] - pads[0] + i * dilation[0]
                                iw = ow * stride[1] - pads[2] + j * dilation[1]
                                if 0 <= ih < H and 0 <= iw < W:
                                    gx[n, c, ih, iw] += float(w[co, cl, i, j]) * float(gy[n, co, oh, ow])
                                    gw[co, cl, i, j] += float(x[n, c, ih, iw]) * float(gy[n, co, oh, ow])
    return gx, gw, gb


# ---------------------------------------------------------------- pooling


def pool_out_size(size, k, s, before, after, d, ceil_mode):
    """PyTorch: ``floor((size + before + after - d*(k-1) - 1) / s) + 1``; ``ceil_mode`` rounds up,
    but the last window must start inside the input or the leading padding."""
    span = size + before + after - d * (k - 1) - 1
    out = -(-span // s) + 1 if ceil_mode else span // s + 1
    if ceil_mode and (out - 1) * s >= size + before:
        out -= 1
    return out


def _pool_windows(x_shape, kernel, stride, pads, dilation, ceil_mode):
    """Every window as ``(oh, ow, taps)``, taps in row-major window order as ``(h, w, where)``,
    ``where`` one of ``'in'`` (inside the input), ``'pad'`` (padding), ``'over'`` (ceil-mode overhang)."""
    H, W = x_shape[-2:]
    t, b, l, r = pads
    ho = pool_out_size(H, kernel[0], stride[0], t, b, dilation[0], ceil_mode)
    wo = pool_out_size(W, kernel[1], stride[1], l, r, dilation[1], ceil_mode)
    windows = []
    for oh in range(ho):
        for ow in range(wo):
            taps = []
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    h = oh * stride[0] - t + i * dilation[0]
                    w = ow * stride[1] - l + j * dilation[1]
                    if 0 <= h < H and 0 <= w < W:
                        where = "in"
                    elif -t <= h < H + b and -l <= w < W + r:
                        where = "pad"
                    else:
                        where = "over"
                    taps.append((h, w, where))
            windows.append((oh, ow, taps))
    return ho, wo, windows


def pool2d(x, kernel, stride, pads=(0, 0, 0, 0), dilation=(1, 1), mode="max", ceil_mode=False,
           count_include_pad=True, divisor_override=None):
    """Max/min/avg/sum pooling, ``pads = (top, bottom, left, right)``. Returns ``(y, argmax)``:
    argmax (flat ``h*W + w``, -1 when the window holds no input element) for max/min, else None.

    max/min: the first strictly larger/smaller input element in row-major window order (padding,
    -inf/+inf, never wins). avg: sum of input elements / (override, or the count of taps in the
    input plus zero padding when count_include_pad, or of taps in the input); sum: divisor 1."""
    N, C, H, W = x.shape
    ho, wo, windows = _pool_windows(x.shape, kernel, stride, pads, dilation, ceil_mode)
    y = np.zeros((N, C, ho, wo))
    argmax = np.full((N, C, ho, wo), -1, np.int64) if mode in ("max", "min") else None
    for n in range(N):
        for c in range(C):
            for oh, ow, taps in windows:
                if mode in ("max", "min"):
                    best = -np.inf if mode == "max" else np.inf
                    for h, w, where in taps:
                        v = x[n, c, h, w] if where == "in" else None
                        if v is None:
                            continue
                        if argmax[n, c, oh, ow] < 0 or (v > best if mode == "max" else v < best):
                            best, argmax[n, c, oh, ow] = v, h * W + w
                    y[n, c, oh, ow] = best
                else:
                    total = sum(x[n, c, h, w] for h, w, where in taps if where == "in")
                    if divisor_override is not None:
                        d = divisor_override
                    elif mode == "sum":
                        d = 1
                    elif count_include_pad:
                        d = sum(1 for _, _, where in taps if where != "over")
                    else:
                        d = sum(1 for _, _, where in taps if where == "in")
                    y[n, c, oh, ow] = total / d if d else 0.0
    return y, argmax


def pool2d_backward(x, gy, kernel, stride, pads=(0, 0, 0, 0), dilation=(1, 1), mode="max",
                    ceil_mode=False, count_include_pad=True, divisor_override=None):
    """dL/dx of ``pool2d``: max/min route gy to the argmax, avg/sum spread gy / divisor."""
    N, C, H, W = x.shape
    _, _, windows = _pool_windows(x.shape, kernel, stride, pads, dilation, ceil_mode)
    _, argmax = pool2d(x, kernel, stride, pads, dilation, mode, ceil_mode, count_include_pad, divisor_override)
    gx = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for oh, ow, taps in windows:
                g = gy[n, c, oh, ow]
                if mode in ("max", "min"):
                    a = argmax[n, c, oh, ow]
                    if a >= 0:
                        gx[n, c, a // W, a % W] += g
                    continue
                if divisor_override is not None:
                    d = divisor_override
                elif mode == "sum":
                    d = 1
                elif count_include_pad:
                    d = sum(1 for _, _, where in taps if where != "over")
                else:
                    d = sum(1 for _, _, where in taps if where == "in")
                for h, w, where in taps:
                    if where == "in" and d:
                        gx[n, c, h, w] += g / d
    return gx


def _adaptive_bins(size, out):
    """PyTorch's bins: ``[floor(i*size/out), ceil((i+1)*size/out))``."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avg_pool2d(x, out):
    N, C, H, W = x.shape
    y = np.zeros((N, C, out[0], out[1]))
    for oh, (h0, h1) in enumerate(_adaptive_bins(H, out[0])):
        for ow, (w0, w1) in enumerate(_adaptive_bins(W, out[1])):
            for n in range(N):
                for c in range(C):
                    y[n, c, oh, ow] = sum(x[n, c, h, w] for h in range(h0, h1) for w in range(w0, w1)) / (
                        (h1 - h0) * (w1 - w0))
    return y


def adaptive_avg_pool2d_backward(x_shape, gy):
    N, C, H, W = x_shape
    gx = np.zeros(x_shape)
    for oh, (h0, h1) in enumerate(_adaptive_bins(H, gy.shape[2])):
        for ow, (w0, w1) in enumerate(_adaptive_bins(W, gy.shape[3])):
            for n in range(N):
                for c in range(C):
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            gx[n, c, h, w] += gy[n, c, oh, ow] / ((h1 - h0) * (w1 - w0))
    return gx


def adaptive_max_pool2d(x, out):
    """PyTorch's bins; returns ``(y, argmax)``, argmax the flat ``h*W + w`` of each bin's first
    maximum in row-major order (a NaN counts as the maximum, the first NaN wins)."""
    N, C, H, W = x.shape
    y = np.zeros((N, C, out[0], out[1]))
    argmax = np.zeros((N, C, out[0], out[1]), np.int64)
    for oh, (h0, h1) in enumerate(_adaptive_bins(H, out[0])):
        for ow, (w0, w1) in enumerate(_adaptive_bins(W, out[1])):
            for n in range(N):
                for c in range(C):
                    best, at = None, None
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = x[n, c, h, w]
                            if np.isnan(best if best is not None else 0.0):
                                continue  # the first NaN stays
                            if best is None or v > best or np.isnan(v):
                                best, at = v, h * W + w
                    y[n, c, oh, ow], argmax[n, c, oh, ow] = best, at
    return y, argmax


def adaptive_max_pool2d_backward(x, gy):
    """dL/dx of ``adaptive_max_pool2d``: each gy added at its bin's argmax."""
    N, C, H, W = x.shape
    _, argmax = adaptive_max_pool2d(x, gy.shape[2:])
    gx = np.zeros(x.shape)
    for n, c, oh, ow in np.ndindex(gy.shape):
        a = argmax[n, c, oh, ow]
        gx[n, c, a // W, a % W] += gy[n, c, oh, ow]
    return gx


# ---------------------------------------------------------------- local response normalization


def _lrn_window(i, n, size):
    """Indices ``[i - floor(n/2), i + floor((n-1)/2)]`` clipped to ``[0, size)``."""
    return range(max(0, i - n // 2), min(size, i + (n - 1) // 2 + 1))


def _lrn_members(x_shape, n, mode, nn, c, h, w):
    """The ``(c', h', w')`` whose squares enter the scale of output ``(nn, c, h, w)``."""
    _, C, H, W = x_shape
    if mode == "across":
        return [(cc, h, w) for cc in _lrn_window(c, n, C)]
    return [(c, hh, ww) for hh in _lrn_window(h, n, H) for ww in _lrn_window(w, n, W)]


def _lrn_alpha(alpha, n, mode, convention):
    if convention in ("torch", "caffe"):
        return alpha / (n if mode == "across" else n * n)
    return alpha


def lrn(x, n, alpha=1e-4, beta=0.75, k=1.0, mode="across", convention="torch"):
    """``y = x * s**-beta``, ``s = k + alpha' * sum of x**2 over the window``; returns ``(y, s)``."""
    a = _lrn_alpha(alpha, n, mode, convention)
    N, C, H, W = x.shape
    y = np.zeros(x.shape)
    s = np.zeros(x.shape)
    for nn in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    members = _lrn_members(x.shape, n, mode, nn, c, h, w)
                    s[nn, c, h, w] = k + a * sum(float(x[nn, m0, m1, m2]) ** 2 for m0, m1, m2 in members)
                    y[nn, c, h, w] = x[nn, c, h, w] * s[nn, c, h, w] ** -beta
    return y, s


def lrn_backward(x, gy, n, alpha=1e-4, beta=0.75, k=1.0, mode="across", convention="torch"):
    """The chain rule, term by term: ``gx[j] = sum_o gy[o] * dy[o]/dx[j]`` with
    ``dy[o]/dx[j] = [o == j] * s[o]**-beta - 2 * alpha' * beta * x[o] * x[j] * s[o]**(-beta-1)``
    for every ``j`` in the window of ``o``."""
    a = _lrn_alpha(alpha, n, mode, convention)
    _, s = lrn(x, n, alpha, beta, k, mode, convention)
    N, C, H, W = x.shape
    gx = np.zeros(x.shape)
    for nn in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    so = s[nn, c, h, w]
                    g = gy[nn, c, h, w]
                    gx[nn, c, h, w] += g * so ** -beta
                    for m0, m1, m2 in _lrn_members(x.shape, n, mode, nn, c, h, w):
                        gx[nn, m0, m1, m2] -= g * 2 * a * beta * x[nn, c, h, w] * x[nn, m0, m1, m2] * so ** (-beta - 1)
    return gx


# ---------------------------------------------------------------- the other families (their own files)
from naive_decoder import conv_transpose2d, conv_transpose2d_backward, upsample, upsample_backward  # noqa: E402, F401
from naive_mobile import (  # noqa: E402, F401
    channel_shuffle,
    channel_shuffle_backward,
    drop_path,
    hardsigmoid,
    hardsigmoid_grad,
    hardswish,
    hardswish_grad,
    relu6,
    relu6_grad,
    silu,
    silu_grad,
)
