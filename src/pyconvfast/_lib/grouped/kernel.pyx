"""The ``grouped`` algorithm: grouped convolution with few channels per group, in one kernel.

ResNeXt's 3x3 layers (32 groups of 4 to 32 channels) and ShuffleNet's grouped 1x1 layers are
too thin for BLAS: 32 GEMMs of depth 36 and width 4 per image spend their time in packing and
call overhead. Here one static ``prange`` runs over (sample, group, block of output pixels)
tasks, every group of the layer in the same parallel loop. A task

1. lowers its block of output pixels for its group into a per-thread buffer,
   ``B[d, p]`` for the ``depth = C_in/groups * KD * KH * KW`` taps ``d`` in (channel, kd, kh, kw)
   order, through the tap tables of :mod:`pyconvfast._core.padding` (any stride, dilation and padding
   mode, no padded copy of the input; interior runs of a row are copied without the tables);
2. multiplies the group's packed weights (``C_out/groups`` rounded up to blocks of 4 output
   channels) by ``B`` with a register-tile micro-kernel (``grouped/simd.h``): 4 output channels x
   3 vectors of pixels (SSE2, AVX2 + FMA) or x 6 vectors (AVX-512F), the whole depth summed in
   registers, the :data:`VARIANTS` row of the SIMD level in use;
3. adds the bias and stores the block into ``out`` through its strides (any layout).

Each output is summed over ``d`` in that fixed order from +0, whatever the thread count or the
pixel block, so results are bitwise the same for every ``n_threads`` (they differ in the last
bits between instruction sets: AVX2 and AVX-512 fuse multiply and add).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from libc.stdlib cimport calloc, free
from libc.string cimport memset
from pyconvfast._lib.cpu.levels cimport PCF_N_LEVELS, bind_level, pcf_cpu_level

from pyconvfast._lib.cpu.levels import SIMD_LEVELS, Variant

cdef extern from "grouped/simd.h" nogil:
    enum: GR_MR
    void pcf_gr_gemm_f32(const float* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                         const float** rows, Py_ssize_t n_pix, float* c, Py_ssize_t ldc)
    void pcf_gr_gemm_f64(const double* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                         const double** rows, Py_ssize_t n_pix, double* c, Py_ssize_t ldc)
    void pcf_gr_gather_f32(float* dst, const float* x_row, Py_ssize_t x_sw,
                           const Py_ssize_t* taps, Py_ssize_t kw_size, Py_ssize_t kw,
                           Py_ssize_t a, Py_ssize_t b, Py_ssize_t lo, Py_ssize_t hi,
                           Py_ssize_t stride, Py_ssize_t offset)
    void pcf_gr_gather_f64(double* dst, const double* x_row, Py_ssize_t x_sw,
                           const Py_ssize_t* taps, Py_ssize_t kw_size, Py_ssize_t kw,
                           Py_ssize_t a, Py_ssize_t b, Py_ssize_t lo, Py_ssize_t hi,
                           Py_ssize_t stride, Py_ssize_t offset)
    ctypedef struct pcf_gr_variant:
        const char* name
    const pcf_gr_variant pcf_gr_variants[]


bind_level()

VARIANTS = tuple(Variant("grouped", SIMD_LEVELS[i], pcf_gr_variants[i].name.decode())
                 for i in range(PCF_N_LEVELS))
"""The variant table (``pcf_gr_variants``): one register tile per SIMD level, named
``<level>_<output channels>x<vectors of pixels>``."""

# Output channels per register tile: the packed weights hold blocks of this many.
K_BLOCK = GR_MR
# Pixel buffers are padded to a multiple of this many elements (the widest vector of floats), so
# the micro-kernel may read and write whole vectors past a block's last pixel.
cdef Py_ssize_t PIXEL_PAD = 16


def active_variant():
    """The row of :data:`VARIANTS` this kernel runs now (the SIMD level in use)."""
    return VARIANTS[pcf_cpu_level()]


cdef inline void _gemm(const floating* w, Py_ssize_t k_blocks, Py_ssize_t depth,
                       const floating** rows, Py_ssize_t n_pix, floating* c,
                       Py_ssize_t ldc) noexcept nogil:
    if floating is float:
        pcf_gr_gemm_f32(w, k_blocks, depth, rows, n_pix, c, ldc)
    else:
        pcf_gr_gemm_f64(w, k_blocks, depth, rows, n_pix, c, ldc)


cdef inline void _gather(floating* dst, const floating* x_row, Py_ssize_t x_sw,
                         const Py_ssize_t* taps, Py_ssize_t kw_size, Py_ssize_t kw, Py_ssize_t a,
                         Py_ssize_t b, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t stride,
                         Py_ssize_t offset) noexcept nogil:
    if floating is float:
        pcf_gr_gather_f32(dst, x_row, x_sw, taps, kw_size, kw, a, b, lo, hi, stride, offset)
    else:
        pcf_gr_gather_f64(dst, x_row, x_sw, taps, kw_size, kw, a, b, lo, hi, stride, offset)


cdef void _lower(
    floating* buf, Py_ssize_t ld, const floating* x_group, Py_ssize_t c_per_group,
    Py_ssize_t x_sc, Py_ssize_t x_sd, Py_ssize_t x_sh, Py_ssize_t x_sw,
    const Py_ssize_t[:, ::1] taps_d, const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w, Py_ssize_t p0, Py_ssize_t p1,
    Py_ssize_t w_lo, Py_ssize_t w_hi, Py_ssize_t stride_w, Py_ssize_t dilation_w,
    Py_ssize_t pad_w,
) noexcept nogil:
    """buf[d * ld + p - p0] for the output pixels p in [p0, p1) of the flattened (D, H, W) output
    plane and the taps d = ((ci * KD + kd) * KH + kh) * KW + kw of one group."""
    cdef Py_ssize_t kd_size = taps_d.shape[1], kh_size = taps_h.shape[1]
    cdef Py_ssize_t kw_size = taps_w.shape[1]
    cdef Py_ssize_t h_out = taps_h.shape[0], w_out = taps_w.shape[0]
    cdef Py_ssize_t p = p0, row, a, b, q, od, oh, ci, kd, kh, kw, i_d, i_h, d
    cdef const floating* x_row
    while p < p1:
        row = p // w_out
        a = p - row * w_out
        b = min(w_out, a + p1 - p)
        od = row // h_out
        oh = row - od * h_out
        q = p - p0
        d = 0
        for ci in range(c_per_group):
            for kd in range(kd_size):
                i_d = taps_d[od, kd]
                for kh in range(kh_size):
                    i_h = taps_h[oh, kh]
                    if i_d < 0 or i_h < 0:
                        for kw in range(kw_size):
                            memset(buf + (d + kw) * ld + q, 0, (b - a) * sizeof(floating))
                    else:
                        x_row = x_group + ci * x_sc + i_d * x_sd + i_h * x_sh
                        for kw in range(kw_size):
                            _gather(buf + (d + kw) * ld + q, x_row, x_sw, &taps_w[0, 0],
                                    kw_size, kw, a, b, w_lo, w_hi, stride_w,
                                    kw * dilation_w - pad_w)
                    d = d + kw_size
        p = p + b - a


cdef void _padded_segment(
    floating* seg, Py_ssize_t f0, Py_ssize_t f1, const floating* x_channel,
    Py_ssize_t x_sd, Py_ssize_t x_sh, Py_ssize_t x_sw,
    const Py_ssize_t* line_d, Py_ssize_t d_len, const Py_ssize_t* line_h, Py_ssize_t h_len,
    const Py_ssize_t* line_w, Py_ssize_t w_len,
    Py_ssize_t w_lo, Py_ssize_t w_hi, Py_ssize_t w_step, Py_ssize_t w_offset,
) noexcept nogil:
    """seg[f - f0] for f in [f0, f1): one phase of the padded input volume of one channel,
    flattened (the lines give the input index of each of its positions per axis, -1 for a zero;
    on W, the positions [w_lo, w_hi) read input ``j * w_step + w_offset``), zero past its end."""
    cdef Py_ssize_t f = f0, row, a, b, pd, ph, i_d, i_h
    while f < f1:
        row = f // w_len
        a = f - row * w_len
        b = min(w_len, a + f1 - f)
        pd = row // h_len
        ph = row - pd * h_len
        if pd >= d_len:
            memset(seg + f - f0, 0, (f1 - f) * sizeof(floating))
            return
        i_d = line_d[pd]
        i_h = line_h[ph]
        if i_d < 0 or i_h < 0:
            memset(seg + f - f0, 0, (b - a) * sizeof(floating))
        else:
            _gather(seg + f - f0, x_channel + i_d * x_sd + i_h * x_sh, x_sw, line_w, 1, 0,
                    a, b, w_lo, w_hi, w_step, w_offset)
        f = f + b - a


def conv_grouped_shifted(
    const floating[:, :, :, :, :] x,
    const floating[:, :, :, ::1] w_packed,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] line_d,
    const Py_ssize_t[:, ::1] line_h,
    const Py_ssize_t[:, ::1] line_w,
    const Py_ssize_t[::1] shifts,
    const Py_ssize_t[::1] phases,
    Py_ssize_t pad_w,
    Py_ssize_t pixel_block,
    int n_threads,
):
    """Grouped convolution without lowering: the taps are shifts of phases of the padded input.

    With stride 1, output (od, oh, ow) reads the padded input at (od + kd*dd, oh + kh*dh,
    ow + kw*dw): in the padded volume flattened with its own row lengths, that is position
    ``q + shift[kd, kh, kw]`` for ``q = (od * H_pad + oh) * W_pad + ow``. With stride s, the
    padded input is split into s (per axis) *phases*, phase r holding positions r, r + s,
    r + 2s...; tap t reads phase ``(t * dilation) % s`` shifted by ``(t * dilation) // s``, and
    the flattening uses the phases' common lengths. A task builds a segment of every phase of
    each channel of its group (about as many elements as the input, not ``KD*KH*KW`` times as
    many) and the micro-kernel reads each tap's row as a shifted view of its phase. The
    positions q whose ow or oh fall past the output are computed and dropped
    (``(W_len - W_out) / W_len`` of the work: 2 of 58 columns for a 56-wide 3x3 layer).

    Parameters
    ----------
    x, w_packed, bias, out, n_threads : as for :func:`conv_grouped`
    line_d, line_h, line_w : (s, L) int64 per axis
        ``line[r, j]``: the input index of padded position ``j * s + r`` (phase r), -1 for a
        zero or past the end; L is the same for every phase of an axis.
    shifts : (KD*KH*KW,) int64, each tap's flattened offset within its phase, (kd, kh, kw) order
    phases : (KD*KH*KW,) int64, each tap's phase, ``(r_d * s_h + r_h) * s_w + r_w``
    pad_w : int, padding before W (for the interior run of each padded row)
    pixel_block : int, flattened positions q per task
    """
    cdef Py_ssize_t batch = out.shape[0], c_out = out.shape[1]
    cdef Py_ssize_t d_out = out.shape[2], h_out = out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t s_d = line_d.shape[0], s_h = line_h.shape[0], s_w = line_w.shape[0]
    cdef Py_ssize_t d_pad = line_d.shape[1], h_pad = line_h.shape[1], w_pad = line_w.shape[1]
    cdef Py_ssize_t n_phases = s_d * s_h * s_w
    cdef Py_ssize_t groups = w_packed.shape[0], k_blocks = w_packed.shape[1]
    cdef Py_ssize_t depth = w_packed.shape[2], n_taps = shifts.shape[0]
    cdef Py_ssize_t c_per_group = x.shape[1] // groups, k_per_group = c_out // groups
    cdef Py_ssize_t w_in = x.shape[4]
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t x_sn = x.strides[0] // itemsize, x_sc = x.strides[1] // itemsize
    cdef Py_ssize_t x_sd = x.strides[2] // itemsize, x_sh = x.strides[3] // itemsize
    cdef Py_ssize_t x_sw = x.strides[4] // itemsize
    cdef Py_ssize_t o_sn = out.strides[0] // itemsize, o_sc = out.strides[1] // itemsize
    cdef Py_ssize_t o_sd = out.strides[2] // itemsize, o_sh = out.strides[3] // itemsize
    cdef Py_ssize_t o_sw = out.strides[4] // itemsize
    cdef Py_ssize_t n_q = ((d_out - 1) * h_pad + h_out - 1) * w_pad + w_out
    cdef Py_ssize_t block = max(1, min(pixel_block, n_q))
    cdef Py_ssize_t ld = (block + PIXEL_PAD - 1) // PIXEL_PAD * PIXEL_PAD
    cdef Py_ssize_t max_shift = 0
    cdef Py_ssize_t seg_len
    cdef Py_ssize_t n_blocks = (n_q + block - 1) // block  # (cdivision: no -(-a // b))
    cdef Py_ssize_t n_tasks = batch * groups * n_blocks
    cdef bint has_bias = bias.shape[0] > 0
    cdef Py_ssize_t task, n, g, blk, q0, q1, q, row, od, oh, ow, ow_end, k, j, ci, t
    cdef Py_ssize_t phase, r_d, r_h, r_w, w_offset, w_lo_r, w_hi_r
    cdef floating* sbuf
    cdef floating* cbuf
    cdef const floating** rows
    cdef floating* o_row
    cdef const floating* c_row
    cdef floating shift
    cdef const floating* x_base
    cdef floating* out_base
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    if n_tasks == 0 or n_q <= 0:
        return
    for t in range(n_taps):
        max_shift = max(max_shift, shifts[t])
    seg_len = ld + max_shift + PIXEL_PAD
    x_base = &x[0, 0, 0, 0, 0]
    out_base = &out[0, 0, 0, 0, 0]
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        sbuf = <floating*> calloc(c_per_group * n_phases * seg_len, sizeof(floating))
        cbuf = <floating*> calloc(k_blocks * GR_MR * ld, sizeof(floating))
        rows = <const floating**> calloc(depth, sizeof(floating*))
        if sbuf == NULL or cbuf == NULL or rows == NULL:
            out_of_memory[0] = 1
        for task in prange(n_tasks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            if sbuf == NULL or cbuf == NULL or rows == NULL:
                continue
            n = task // (groups * n_blocks)
            g = (task // n_blocks) % groups
            blk = task % n_blocks
            q0 = blk * block
            q1 = min(n_q, q0 + block)
            for ci in range(c_per_group):
                for phase in range(n_phases):
                    r_d = phase // (s_h * s_w)
                    r_h = (phase // s_w) % s_h
                    r_w = phase % s_w
                    # Phase r_w of W: position j reads input j * s_w + r_w - pad_w where in range.
                    w_offset = r_w - pad_w
                    w_lo_r = min(max(0, (pad_w - r_w + s_w - 1) // s_w), w_pad)
                    w_hi_r = min(max(w_lo_r, (w_in - 1 - w_offset) // s_w + 1
                                     if w_in - 1 - w_offset >= 0 else w_lo_r), w_pad)
                    _padded_segment(
                        sbuf + (ci * n_phases + phase) * seg_len, q0, q1 + max_shift,
                        x_base + n * x_sn + (g * c_per_group + ci) * x_sc, x_sd, x_sh, x_sw,
                        &line_d[r_d, 0], d_pad, &line_h[r_h, 0], h_pad, &line_w[r_w, 0], w_pad,
                        w_lo_r, w_hi_r, s_w, w_offset)
                for t in range(n_taps):
                    rows[ci * n_taps + t] = (sbuf + (ci * n_phases + phases[t]) * seg_len
                                             + shifts[t])
            _gemm(&w_packed[g, 0, 0, 0], k_blocks, depth, rows, q1 - q0, cbuf, ld)
            q = q0
            while q < q1:
                row = q // w_pad
                ow = q - row * w_pad
                ow_end = min(w_pad, ow + q1 - q)
                od = row // h_pad
                oh = row - od * h_pad
                if oh < h_out and ow < w_out:
                    for k in range(k_per_group):
                        shift = bias[g * k_per_group + k] if has_bias else 0
                        o_row = (out_base + n * o_sn + (g * k_per_group + k) * o_sc
                                 + od * o_sd + oh * o_sh)
                        c_row = cbuf + k * ld + q - q0 - ow
                        for j in range(ow, min(ow_end, w_out)):
                            o_row[j * o_sw] = c_row[j] + shift
                q = q + ow_end - ow
        free(sbuf)
        free(cbuf)
        free(rows)
    raise_if_interrupted(&stop)
    if out_of_memory[0]:
        raise MemoryError("grouped: could not allocate its work buffers")


def conv_grouped(
    const floating[:, :, :, :, :] x,
    const floating[:, :, :, ::1] w_packed,
    const floating[::1] bias,
    floating[:, :, :, :, :] out,
    const Py_ssize_t[:, ::1] taps_d,
    const Py_ssize_t[:, ::1] taps_h,
    const Py_ssize_t[:, ::1] taps_w,
    Py_ssize_t stride_w,
    Py_ssize_t dilation_w,
    Py_ssize_t pad_w,
    Py_ssize_t pixel_block,
    int n_threads,
):
    """Grouped convolution of validated 5-D views into ``out``.

    Parameters
    ----------
    x : (N, C_in, D, H, W) float32 or float64 array view, any strides
    w_packed : (groups, k_blocks, depth, K_BLOCK) C-contiguous array of the same dtype
        ``w_packed[g, kb, d, i]`` is the weight of output channel ``g * k_per_group + kb *
        K_BLOCK + i`` (zero past ``k_per_group``) at tap ``d`` (in (ci, kd, kh, kw) order).
    bias : (C_out,) or (0,) contiguous array; empty means no bias
    out : (N, C_out, D_out, H_out, W_out) writable array view, any strides
    taps_d, taps_h, taps_w : (out_size, kernel_size) int64 tap tables, -1 for a zero tap
    stride_w, dilation_w, pad_w : int
        The W axis's geometry, to read interior columns without the table.
    pixel_block : int
        Output pixels (of the flattened output plane) per task.
    n_threads : int, OpenMP team size
    """
    cdef Py_ssize_t batch = out.shape[0], c_out = out.shape[1]
    cdef Py_ssize_t d_out = out.shape[2], h_out = out.shape[3], w_out = out.shape[4]
    cdef Py_ssize_t plane = d_out * h_out * w_out
    cdef Py_ssize_t groups = w_packed.shape[0], k_blocks = w_packed.shape[1]
    cdef Py_ssize_t depth = w_packed.shape[2]
    cdef Py_ssize_t c_per_group = x.shape[1] // groups, k_per_group = c_out // groups
    cdef Py_ssize_t w_in = x.shape[4], kw_size = taps_w.shape[1]
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t x_sn = x.strides[0] // itemsize, x_sc = x.strides[1] // itemsize
    cdef Py_ssize_t x_sd = x.strides[2] // itemsize, x_sh = x.strides[3] // itemsize
    cdef Py_ssize_t x_sw = x.strides[4] // itemsize
    cdef Py_ssize_t o_sn = out.strides[0] // itemsize, o_sc = out.strides[1] // itemsize
    cdef Py_ssize_t o_sd = out.strides[2] // itemsize, o_sh = out.strides[3] // itemsize
    cdef Py_ssize_t o_sw = out.strides[4] // itemsize
    cdef Py_ssize_t block = max(1, min(pixel_block, plane))
    cdef Py_ssize_t ld = (block + PIXEL_PAD - 1) // PIXEL_PAD * PIXEL_PAD
    cdef Py_ssize_t n_blocks = (plane + block - 1) // block  # (cdivision: no -(-a // b))
    cdef Py_ssize_t n_tasks = batch * groups * n_blocks
    cdef bint has_bias = bias.shape[0] > 0
    cdef Py_ssize_t w_lo, w_hi, last
    cdef Py_ssize_t task, n, g, blk, p0, p1, p, row, a, b, q, od, oh, k, j, i_row
    cdef floating* bbuf
    cdef floating* cbuf
    cdef const floating** rows
    cdef floating* o_row
    cdef const floating* c_row
    cdef floating shift
    cdef const floating* x_base
    cdef floating* out_base
    # An array, not a scalar: Cython makes scalars assigned in a parallel block thread-private.
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    if n_tasks == 0:
        return
    x_base = &x[0, 0, 0, 0, 0]
    out_base = &out[0, 0, 0, 0, 0]
    # Interior columns [w_lo, w_hi): every W tap in range, read without the table.
    last = w_in - 1 + pad_w - (kw_size - 1) * dilation_w
    w_lo = min((pad_w + stride_w - 1) // stride_w, w_out)
    w_hi = max(min(last // stride_w + 1 if last >= 0 else 0, w_out), w_lo)
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        # calloc: the padding columns are read by the micro-kernel (their results dropped);
        # zeros there keep them ordinary numbers.
        bbuf = <floating*> calloc(depth * ld, sizeof(floating))
        cbuf = <floating*> calloc(k_blocks * GR_MR * ld, sizeof(floating))
        rows = <const floating**> calloc(depth, sizeof(floating*))
        if bbuf == NULL or cbuf == NULL or rows == NULL:
            out_of_memory[0] = 1
        else:
            for i_row in range(depth):
                rows[i_row] = bbuf + i_row * ld
        for task in prange(n_tasks, schedule="static"):
            if pcf_interrupted(&stop):
                continue
            if bbuf == NULL or cbuf == NULL or rows == NULL:
                continue
            n = task // (groups * n_blocks)
            g = (task // n_blocks) % groups
            blk = task % n_blocks
            p0 = blk * block
            p1 = min(plane, p0 + block)
            _lower(bbuf, ld, x_base + n * x_sn + g * c_per_group * x_sc, c_per_group,
                   x_sc, x_sd, x_sh, x_sw, taps_d, taps_h, taps_w, p0, p1, w_lo, w_hi,
                   stride_w, dilation_w, pad_w)
            _gemm(&w_packed[g, 0, 0, 0], k_blocks, depth, rows, p1 - p0, cbuf, ld)
            p = p0
            while p < p1:
                row = p // w_out
                a = p - row * w_out
                b = min(w_out, a + p1 - p)
                od = row // h_out
                oh = row - od * h_out
                q = p - p0
                for k in range(k_per_group):
                    shift = bias[g * k_per_group + k] if has_bias else 0
                    o_row = (out_base + n * o_sn + (g * k_per_group + k) * o_sc + od * o_sd
                             + oh * o_sh)
                    c_row = cbuf + k * ld + q
                    if o_sw == 1:
                        for j in range(b - a):
                            o_row[a + j] = c_row[j] + shift
                    else:
                        for j in range(b - a):
                            o_row[(a + j) * o_sw] = c_row[j] + shift
                p = p + b - a
        free(bbuf)
        free(cbuf)
        free(rows)
    raise_if_interrupted(&stop)
    if out_of_memory[0]:
        raise MemoryError(
            f"grouped: could not allocate {(depth + k_blocks * GR_MR) * ld} work elements per "
            "thread")
