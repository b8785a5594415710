# The depthwise SIMD loops of depthwise/simd.h (one variant per SIMD level, the level of
# pyconvfast._lib.cpu.levels in use), with fused-type wrappers, shared by the depthwise and fused
# separable modules. Each extension that cimports this compiles its own copy of the header and
# calls bind_level() at import so that it follows the one level.
from cython cimport floating
from pyconvfast._lib.cpu.levels cimport pcf_cpu_level  # includes cpu/dispatch.h first


cdef extern from "depthwise/simd.h" nogil:
    void pcf_dw_rows_f32(float* acc, Py_ssize_t acc_row, Py_ssize_t n, Py_ssize_t n_rows,
                         Py_ssize_t x_row, Py_ssize_t n_taps, const float** xs, const float* ws,
                         const float* bias)
    void pcf_dw_rows_f64(double* acc, Py_ssize_t acc_row, Py_ssize_t n, Py_ssize_t n_rows,
                         Py_ssize_t x_row, Py_ssize_t n_taps, const double** xs,
                         const double* ws, const double* bias)
    void pcf_dw_rows_strided_f32(float* acc, Py_ssize_t n, Py_ssize_t n_taps, const float** xs,
                                 const float* ws, Py_ssize_t offset, Py_ssize_t step)
    void pcf_dw_rows_strided_f64(double* acc, Py_ssize_t n, Py_ssize_t n_taps,
                                 const double** xs, const double* ws, Py_ssize_t offset,
                                 Py_ssize_t step)
    void pcf_dw_pixels_f32(float* acc, Py_ssize_t acc_step, Py_ssize_t n_pixels,
                           Py_ssize_t x_step, Py_ssize_t channels, Py_ssize_t multiplier,
                           Py_ssize_t w_pitch, Py_ssize_t n_taps, const float** xs,
                           const float** ws, const float* bias)
    void pcf_dw_pixels_f64(double* acc, Py_ssize_t acc_step, Py_ssize_t n_pixels,
                           Py_ssize_t x_step, Py_ssize_t channels, Py_ssize_t multiplier,
                           Py_ssize_t w_pitch, Py_ssize_t n_taps, const double** xs,
                           const double** ws, const double* bias)
    ctypedef struct pcf_dw_variant:
        const char* name
    const pcf_dw_variant pcf_dw_variants[]


cdef inline void dw_rows(floating* acc, Py_ssize_t acc_row, Py_ssize_t n, Py_ssize_t n_rows,
                         Py_ssize_t x_row, Py_ssize_t n_taps, const floating** xs,
                         const floating* ws, const floating* bias) noexcept nogil:
    if floating is float:
        pcf_dw_rows_f32(acc, acc_row, n, n_rows, x_row, n_taps, xs, ws, bias)
    else:
        pcf_dw_rows_f64(acc, acc_row, n, n_rows, x_row, n_taps, xs, ws, bias)


cdef inline void dw_rows_strided(floating* acc, Py_ssize_t n, Py_ssize_t n_taps,
                                 const floating** xs, const floating* ws, Py_ssize_t offset,
                                 Py_ssize_t step) noexcept nogil:
    if floating is float:
        pcf_dw_rows_strided_f32(acc, n, n_taps, xs, ws, offset, step)
    else:
        pcf_dw_rows_strided_f64(acc, n, n_taps, xs, ws, offset, step)


cdef inline void dw_pixels(floating* acc, Py_ssize_t acc_step, Py_ssize_t n_pixels,
                           Py_ssize_t x_step, Py_ssize_t channels, Py_ssize_t multiplier,
                           Py_ssize_t w_pitch, Py_ssize_t n_taps, const floating** xs,
                           const floating** ws, const floating* bias) noexcept nogil:
    if floating is float:
        pcf_dw_pixels_f32(acc, acc_step, n_pixels, x_step, channels, multiplier, w_pitch, n_taps,
                          xs, ws, bias)
    else:
        pcf_dw_pixels_f64(acc, acc_step, n_pixels, x_step, channels, multiplier, w_pitch, n_taps,
                          xs, ws, bias)


cdef inline void interior_outputs(Py_ssize_t size_in, Py_ssize_t size_out, Py_ssize_t kernel,
                                  Py_ssize_t stride, Py_ssize_t dilation, Py_ssize_t pad,
                                  Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the outputs of one axis whose taps o*stride - pad + t*dilation are all inside
    [0, size_in), so that every padding mode reads them unchanged (hi == lo if none)."""
    cdef Py_ssize_t last = size_in - 1 + pad - (kernel - 1) * dilation
    lo[0] = min((pad + stride - 1) // stride, size_out)
    hi[0] = max(min(last // stride + 1 if last >= 0 else 0, size_out), lo[0])
