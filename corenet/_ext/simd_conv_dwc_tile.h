/* Design
 * ------
 * The micro-kernels of the channel-vectorised depthwise convolution (simd_conv_dwc_driver.h), for
 * maps too small for the row-vector kernels of simd_conv_tile.h (a 2x2 output row fills 2 of 16
 * lanes; MobileNetV2's and EfficientNet's last stages are 4x4, 2x2 and 1x1). Included at the end
 * of simd_conv_tile.h, so compiled once per instruction set and element type with its T, L, FN.
 *
 * A block holds CS_DWC_CB channels of one image pixel-major: element (pixel p, channel c) at
 * p * CS_DWC_CB + c. The input block is padded (Hp x Wp pixels: every tap of every output in range);
 * the weights are tap-major (tap t, channel c) at t * CS_DWC_CB + c. Each tap of each output pixel
 * is then CS_DWC_CB / L vector multiply-adds on contiguous data, at any stride and dilation.
 */

#define DWV (CS_DWC_CB / L)

/* OUT yb (Ho*Wo pixels) = depthwise correlation of xb (Hp x Wp, row pitch Wp) with wt, plus bias */
static void FN(dwc_forward_block)(const T* restrict xb, const T* restrict wt, const T* restrict bias,
                                  T* restrict yb, long Ho, long Wo, long Wp, long kh, long kw, long sh,
                                  long sw, long dh, long dw)
{
    for (long oh = 0; oh < Ho; oh++)
        for (long ow = 0; ow < Wo; ow++) {
            FN(vec) acc[DWV];
            for (long v = 0; v < DWV; v++)
                acc[v] = FN(loadu)(bias + v * L);
            for (long i = 0; i < kh; i++) {
                const T* xr = xb + ((oh * sh + i * dh) * Wp + ow * sw) * CS_DWC_CB;
                const T* wr = wt + i * kw * CS_DWC_CB;
                for (long j = 0; j < kw; j++)
                    for (long v = 0; v < DWV; v++)
                        acc[v] += FN(loadu)(xr + j * dw * CS_DWC_CB + v * L) * FN(loadu)(wr + j * CS_DWC_CB + v * L);
            }
            for (long v = 0; v < DWV; v++)
                FN(storeu)(yb + (oh * Wo + ow) * CS_DWC_CB + v * L, acc[v]);
        }
}

/* OUT gxb (Hp x Wp) = the transposed correlation of gyb (Ho*Wo pixels) with wt (gxb zeroed here) */
static void FN(dwc_backward_block)(const T* restrict gyb, const T* restrict wt, T* restrict gxb, long Hp,
                                   long Ho, long Wo, long Wp, long kh, long kw, long sh, long sw, long dh,
                                   long dw)
{
    memset(gxb, 0, (size_t)(Hp * Wp * CS_DWC_CB) * sizeof(T));
    for (long oh = 0; oh < Ho; oh++)
        for (long ow = 0; ow < Wo; ow++) {
            FN(vec) g[DWV];
            for (long v = 0; v < DWV; v++)
                g[v] = FN(loadu)(gyb + (oh * Wo + ow) * CS_DWC_CB + v * L);
            for (long i = 0; i < kh; i++) {
                T* xr = gxb + ((oh * sh + i * dh) * Wp + ow * sw) * CS_DWC_CB;
                const T* wr = wt + i * kw * CS_DWC_CB;
                for (long j = 0; j < kw; j++)
                    for (long v = 0; v < DWV; v++) {
                        T* p = xr + j * dw * CS_DWC_CB + v * L;
                        FN(storeu)(p, FN(loadu)(p) + g[v] * FN(loadu)(wr + j * CS_DWC_CB + v * L));
                    }
            }
        }
}

/* IN/OUT gwt (taps x CS_DWC_CB) += sum over output pixels of xb (at each tap) * gyb */
static void FN(dwc_wgrad_block)(const T* restrict xb, const T* restrict gyb, T* restrict gwt, long Ho, long Wo,
                                long Wp, long kh, long kw, long sh, long sw, long dh, long dw)
{
    for (long i = 0; i < kh; i++)
        for (long j = 0; j < kw; j++) {
            FN(vec) acc[DWV];
            T* out = gwt + (i * kw + j) * CS_DWC_CB;
            for (long v = 0; v < DWV; v++)
                acc[v] = FN(loadu)(out + v * L);
            for (long oh = 0; oh < Ho; oh++) {
                const T* xr = xb + ((oh * sh + i * dh) * Wp + j * dw) * CS_DWC_CB;
                const T* gr = gyb + oh * Wo * CS_DWC_CB;
                for (long ow = 0; ow < Wo; ow++)
                    for (long v = 0; v < DWV; v++)
                        acc[v] += FN(loadu)(xr + ow * sw * CS_DWC_CB + v * L) * FN(loadu)(gr + ow * CS_DWC_CB + v * L);
            }
            for (long v = 0; v < DWV; v++)
                FN(storeu)(out + v * L, acc[v]);
        }
}

#undef DWV
