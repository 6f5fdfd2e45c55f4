"""The input gradient of a CPU convolution as forward convolutions of ``gy``: the flipped padding of
a stride-1 layer (:func:`gx_forward_padding`, :func:`rotated_weights`) and the stride phases of a
strided one (:func:`strided_input_gradient`, polyphase), so that no col2im (a scattered
accumulation) is needed."""

from __future__ import annotations

import numpy as np


def gx_forward_padding(x_shape, w_shape, stride, padding4, dilation, any_channels=False):
    """The padding of the forward convolution of ``gy`` that gives the input gradient, or ``None``
    where the input gradient is better taken by col2im.

    For stride 1, ``gx[c, h, w] = sum_{o,i,j} gy[o, h + pt - i*dh, w + pl - j*dw] * w[o, c, i, j]``
    is a cross-correlation of ``gy`` with ``rotated_weights(w)`` and padding ``span - pad`` per side:
    im2col of ``gy`` (a strided copy, fast) replaces col2im (a scattered accumulation, ~2x slower),
    and the GEMM has the forward's shape. Worth it while ``gy`` has no more channels than ``x`` (its
    column matrix is the bigger one; ``any_channels`` lifts that for the direct kernel, which has no
    column matrix) and no side is padded beyond the kernel's span (the flipped padding would be
    negative)."""
    if tuple(stride) != (1, 1) or (w_shape[0] > x_shape[1] and not any_channels):
        return None
    span_h, span_w = dilation[0] * (w_shape[2] - 1), dilation[1] * (w_shape[3] - 1)
    t, b, l, r = padding4
    pads = (span_h - t, span_h - b, span_w - l, span_w - r)
    return pads if min(pads) >= 0 else None


def _phase_taps(size, k, s, d, pad, q):
    """One axis of a strided layer's input gradient, for the input positions ``i`` with
    ``(i + pad) % s == q``: ``(taps, first, count, gy_offset, dil)`` such that for ``a < count``
    ``gx[first + s*a] = sum_u gy[a + gy_offset + u*dil] * w[taps[u]]`` (gy zero outside its range);
    ``None`` when no position or no tap has this phase.

    From ``gx[i] = sum over (o, j) with o*s - pad + j*d == i of gy[o] * w[j]``: a tap ``j`` reaches
    phase ``q`` when ``j*d % s == q``, and then ``o = a + a_lo + (q - j*d)/s``. Taken in descending
    ``j`` the offsets rise by ``d / gcd(d, s)``: a stride-1 correlation with that dilation."""
    taps = [j for j in range(k - 1, -1, -1) if (j * d) % s == q]
    a_lo = -((q - pad) // s)  # ceil((pad - q) / s): the first a with q - pad + s*a >= 0
    a_hi = -((q - pad - size) // s)  # ceil((size + pad - q) / s)
    if not taps or a_hi <= a_lo:
        return None
    dil = d // np.gcd(d, s)
    return taps, q - pad + s * a_lo, a_hi - a_lo, a_lo + (q - taps[0] * d) // s, dil


def strided_input_gradient(prims, w, gy, stride, padding4, dilation, gx):
    """OUT gx (N, C_in, H, W): the input gradient of a strided, ungrouped convolution as one stride-1
    ``simd_forward`` per phase of the stride (polyphase): each input pixel phase ``(qh, qw)`` is a
    correlation of ``gy`` with the flipped, swapped sub-kernel of the taps that reach it. Every
    multiply-add is one of the gradient's own; no column matrix, no scattered accumulation."""
    kh, kw = w.shape[2:]
    C_in = gx.shape[1]
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding4, dilation
    H, W = gx.shape[2:]
    for qh in range(sh):
        ph = _phase_taps(H, kh, sh, dh, pt, qh)
        if ph is None:  # no tap reaches these rows (or there are none): their gradient is 0
            gx[:, :, (qh - pt) % sh :: sh, :] = 0
            continue
        th, fh, nh, oh, dh2 = ph
        for qw in range(sw):
            pw = _phase_taps(W, kw, sw, dw, pl, qw)
            if pw is None:
                gx[:, :, fh::sh, (qw - pl) % sw :: sw] = 0
                continue
            tw, fw, nw, ow, dw2 = pw
            # (C_in, C_out, len(th), len(tw)): sub-kernel, flipped, input/output channels swapped
            ws = np.ascontiguousarray(w[:, :, th][:, :, :, tw].transpose(1, 0, 2, 3))
            # output (a, b) reads gy[a + oh + u*dh2, b + ow + v*dw2]: a padding of -oh, -ow (the
            # direct kernel's packing takes a negative padding as an offset into gy, no copy)
            out = np.empty((gy.shape[0], C_in, nh, nw), dtype=gy.dtype)
            prims.simd_forward(gy, ws, None, (1, 1), (-oh, 0, -ow, 0), (dh2, dw2), out)
            gx[:, :, fh::sh, fw::sw] = out


def rotated_weights(w, groups):
    """``w (C_out, C_in/groups, kh, kw)`` -> ``(C_in, C_out/groups, kh, kw)``: per group, input and
    output channels swapped and both spatial axes flipped."""
    C_out, cg, kh, kw = w.shape
    cog = C_out // groups
    wr = w.reshape(groups, cog, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(wr).reshape(groups * cg, cog, kh, kw)
