"""Plain-loop oracles of the decoder ops (transposed convolution, upsampling), float64; re-exported
by ``naive`` (``naive.conv_transpose2d``), whose rules they follow."""

import numpy as np

# ---------------------------------------------------------------- transposed convolution


def conv_transpose2d(x, w, bias=None, stride=(1, 1), pads=(0, 0, 0, 0), output_padding=(0, 0), dilation=(1, 1),
                     groups=1):
    """PyTorch's transposed convolution, as a scatter: every ``x[n, ci, h, w] * w[ci, cl, i, j]`` is
    added to ``y[n, g*cog + cl, h*sh - top + i*dh, w*sw - left + j*dw]`` when that lies inside the
    output ``H_out = (H - 1)*sh - top - bottom + dh*(kH - 1) + output_padding_h + 1``."""
    N, C_in, H, W = x.shape
    _, cog, kh, kw = w.shape
    cg = C_in // groups
    t, b, l, r = pads
    ho = (H - 1) * stride[0] - t - b + dilation[0] * (kh - 1) + output_padding[0] + 1
    wo = (W - 1) * stride[1] - l - r + dilation[1] * (kw - 1) + output_padding[1] + 1
    y = np.zeros((N, cog * groups, ho, wo))
    for n in range(N):
        for ci in range(C_in):
            g = ci // cg
            for cl in range(cog):
                for h in range(H):
                    for ww in range(W):
                        for i in range(kh):
                            for j in range(kw):
                                oh = h * stride[0] - t + i * dilation[0]
                                ow = ww * stride[1] - l + j * dilation[1]
                                if 0 <= oh < ho and 0 <= ow < wo:
                                    y[n, g * cog + cl, oh, ow] += float(x[n, ci, h, ww]) * float(w[ci, cl, i, j])
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv_transpose2d_backward(x, w, gy, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """``(gx, gw, gb)`` of :func:`conv_transpose2d`: the same loops, each product's contribution
    sent back to both factors."""
    N, C_in, H, W = x.shape
    _, cog, kh, kw = w.shape
    cg = C_in // groups
    t, _, l, _ = pads
    ho, wo = gy.shape[2:]
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for n in range(N):
        for ci in range(C_in):
            g = ci // cg
            for cl in range(cog):
                for h in range(H):
                    for ww in range(W):
                        for i in range(kh):
                            for j in range(kw):
                                oh = h * stride[0] - t + i * dilation[0]
                                ow = ww * stride[1] - l + j * dilation[1]
                                if 0 <= oh < ho and 0 <= ow < wo:
                                    g_out = float(gy[n, g * cog + cl, oh, ow])
                                    gx[n, ci, h, ww] += g_out * float(w[ci, cl, i, j])
                                    gw[ci, cl, i, j] += g_out * float(x[n, ci, h, ww])
    return gx, gw, np.asarray(gy, np.float64).sum(axis=(0, 2, 3))


# ---------------------------------------------------------------- upsampling


def _upsample_taps(size, out, scale_factor, mode, align_corners):
    """Per output index along one axis: ``[(input index, weight), ...]`` by PyTorch's rules
    (``F.interpolate`` with ``recompute_scale_factor=None``), in float64."""
    taps = []
    if out == size:  # PyTorch copies when the size does not change, whatever the scale factor
        return [[(o, 1.0)] for o in range(out)]
    scale = 1.0 / scale_factor if scale_factor else size / out
    for o in range(out):
        if mode == "nearest":  # PyTorch halves when the size exactly doubles, whatever the scale factor
            src = o // 2 if out == 2 * size else min(int(np.floor(np.float32(o) * np.float32(scale))), size - 1)
            taps.append([(src, 1.0)])
            continue
        if align_corners:
            src = o * (size - 1) / (out - 1) if out > 1 else 0.0
        else:
            src = max(scale * (o + 0.5) - 0.5, 0.0)
        i0 = min(int(np.floor(src)), size - 1)
        lam = min(max(src - i0, 0.0), 1.0)
        i1 = min(i0 + 1, size - 1)
        taps.append([(i0, 1.0 - lam), (i1, lam)])
    return taps


def upsample(x, out_hw, scale_factor=(None, None), mode="nearest", align_corners=False):
    """``y[n, c, oh, ow] = sum_{(h, a), (w, b)} a * b * x[n, c, h, w]`` over the taps of each axis."""
    N, C, H, W = x.shape
    th = _upsample_taps(H, out_hw[0], scale_factor[0], mode, align_corners)
    tw = _upsample_taps(W, out_hw[1], scale_factor[1], mode, align_corners)
    y = np.zeros((N, C, *out_hw))
    for oh in range(out_hw[0]):
        for ow in range(out_hw[1]):
            for h, a in th[oh]:
                for w, b in tw[ow]:
                    y[:, :, oh, ow] += a * b * np.asarray(x[:, :, h, w], np.float64)
    return y


def upsample_backward(x_shape, gy, scale_factor=(None, None), mode="nearest", align_corners=False):
    """The adjoint: each ``gy[n, c, oh, ow]`` sent back to the taps it read, with their weights."""
    N, C, H, W = x_shape
    ho, wo = gy.shape[2:]
    th = _upsample_taps(H, ho, scale_factor[0], mode, align_corners)
    tw = _upsample_taps(W, wo, scale_factor[1], mode, align_corners)
    gx = np.zeros(x_shape)
    for oh in range(ho):
        for ow in range(wo):
            for h, a in th[oh]:
                for w, b in tw[ow]:
                    gx[:, :, h, w] += a * b * np.asarray(gy[:, :, oh, ow], np.float64)
    return gx
