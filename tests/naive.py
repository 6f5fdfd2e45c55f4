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

# ---------------------------------------------------------------- local response normalization
