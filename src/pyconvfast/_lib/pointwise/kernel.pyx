"""The ``pointwise_packed`` kernel: 1x1 stride-1 unpadded convolutions as our own packed GEMM.

``out[n, g * K_g + k, p] = bias[g * K_g + k] + sum_c w[g * K_g + k, c] x[n, g * C_g + c, p]``
over the flattened pixels ``p``. The weight comes packed once (by the algorithm's ``prepare``,
:func:`pack_weights`) into panels of 16 (float32) or 8 (float64) output channels, each stored
input channel by input channel, the order the micro-kernels stream them. One task computes the
pixels of a block of one (sample, group) for a block of panels; the input channels are taken in
blocks of ``kb`` so that the activation panel each thread packs stays in L1 while every panel
of the block reuses it. Two tile forms (``pointwise/gemm_impl.h``): "chw" (vectors along
pixels: rows of output channels x up to 48 pixels, weights broadcast; for outputs whose pixels
are contiguous, as NCHW) and "hwc" (vectors along output channels: rows of pixels x 1 to 4
panels, inputs broadcast; for NHWC outputs, and for NCHW ones through a per-thread stage that
is copied out at the end of each task). The bias starts the accumulators.

Each output sums bias + w[0] x[0] + w[1] x[1] + ... in input-channel order with one fused
multiply-add per term (FMA at the AVX2 and AVX-512 levels, a multiply and an add at the
baseline), whatever the tile, block or task: results are bitwise the same for every thread
count and split (not across levels). :data:`VARIANTS` lists the micro-kernels of each level; the
SIMD level of :mod:`pyconvfast._lib.cpu.levels` picks one.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free
from pyconvfast._lib.common.buffers cimport thread_buffer
from pyconvfast._lib.common.fpstate cimport pcf_flush_subnormals_begin, pcf_flush_subnormals_end
from pyconvfast._lib.common.interrupt cimport (
    pcf_interrupt, pcf_interrupt_start, pcf_interrupted, raise_if_interrupted,
)
from pyconvfast._lib.cpu.levels cimport PCF_N_LEVELS, bind_level, pcf_cpu_level

import math

import numpy as np

from pyconvfast._lib.cpu.levels import SIMD_LEVELS, Variant


cdef extern from "pointwise/gemm.h" nogil:
    ctypedef void (*task_f32)(const float*, Py_ssize_t, Py_ssize_t, float*, Py_ssize_t,
                              Py_ssize_t, const float*, const float*, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int,
                              float*, float*)
    ctypedef void (*task_f64)(const double*, Py_ssize_t, Py_ssize_t, double*, Py_ssize_t,
                              Py_ssize_t, const double*, const double*, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int,
                              double*, double*)
    ctypedef struct pcf_pw_shape_f32:
        Py_ssize_t chw_rows, chw_cols, hwc_rows, panel
        task_f32 task
    ctypedef struct pcf_pw_shape_f64:
        Py_ssize_t chw_rows, chw_cols, hwc_rows, panel
        task_f64 task
    ctypedef struct pcf_pw_variant:
        const char* name
        const pcf_pw_shape_f32* f32
        const pcf_pw_shape_f64* f64
    const pcf_pw_variant pcf_pw_variants[]
    Py_ssize_t pcf_pw_buffer_elements(Py_ssize_t kb)

bind_level()

VARIANTS = tuple(Variant("pointwise_packed", SIMD_LEVELS[i], pcf_pw_variants[i].name.decode())
                 for i in range(PCF_N_LEVELS))
"""The variant table (``pcf_pw_variants``, ``pointwise/gemm.h``): each level's micro-kernels,
named by their float32 tiles (output channels x pixels for "chw", pixels x channels for
"hwc"). FMA at the AVX2 and AVX-512F levels, so the variants differ in the last bits."""

FORMS = ("chw", "hwc")
"""The tile forms: "chw" (vectors along pixels) and "hwc" (vectors along channels)."""

SPLITS = ("pixels", "channels")
"""How a (sample, group) is cut into tasks: blocks of pixels or blocks of weight panels."""

# Planes of fewer pixels than this are split over weight panels (output channels), larger ones
# over pixels: a 7x7 or 14x14 plane cut into pixel blocks leaves each task a few thin tiles.
SPLIT_CHANNELS_BELOW = 512

# Largest staging buffer of a thread (bytes; see conv_pointwise_packed): a 7x7 or 14x14 plane's
# outputs fit whole, a large plane is cut into more tasks.
cdef Py_ssize_t STAGE_BYTES = 1 << 22


def active_variant():
    """The row of :data:`VARIANTS` this kernel runs now (the SIMD level in use)."""
    return VARIANTS[pcf_cpu_level()]


def panel_width(dtype):
    """Output channels of a packed weight panel: one 64-byte vector (16 float32, 8 float64)."""
    return 64 // np.dtype(dtype).itemsize


def pack_weights(w, groups):
    """The weight as panels of :func:`panel_width` output channels, input channel by channel.

    Parameters
    ----------
    w : ndarray, (C_out, C_in // groups), float32 or float64
    groups : int

    Returns
    -------
    ndarray, (groups * n_panels, C_in // groups, panel), C-contiguous, with
    ``packed[g * n_panels + q, c, j] = w[g * K_g + q * panel + j, c]`` (zero past ``K_g``),
    ``K_g = C_out // groups``, ``n_panels = ceil(K_g / panel)``.

    Examples
    --------
    >>> import numpy as np
    >>> pack_weights(np.ones((20, 3), np.float32), 1).shape
    (2, 3, 16)
    """
    c_out, c_g = w.shape
    k_g = c_out // groups
    panel = panel_width(w.dtype)
    n_panels = -(-k_g // panel)
    padded = np.zeros((groups, n_panels * panel, c_g), dtype=w.dtype)
    padded[:, :k_g] = w.reshape(groups, k_g, c_g)
    return np.ascontiguousarray(
        padded.reshape(groups, n_panels, panel, c_g).transpose(0, 1, 3, 2)
    ).reshape(groups * n_panels, c_g, panel)


def conv_pointwise_packed(
    const floating[:, :, :] x,
    const floating[:, :, ::1] packed,
    const floating[::1] bias,
    floating[:, :, :] out,
    Py_ssize_t groups,
    str form,
    str split,
    Py_ssize_t kb,
    int n_threads,
):
    """1x1 stride-1 unpadded convolution with the packed micro-kernels.

    Parameters
    ----------
    x : (N, C_in, P) view, any strides (pixels flattened)
    packed : (groups * n_panels, C_in // groups, panel) from :func:`pack_weights`
    bias : (C_out,) or (0,) contiguous
    out : (N, C_out, P) writable view, any strides, not overlapping ``x``
    groups : number of channel groups
    form : "chw" or "hwc" (:data:`FORMS`)
    split : "pixels" or "channels" (:data:`SPLITS`), or "" to choose from the plane's size
    kb : input channels per block (>= 1)
    n_threads : OpenMP team size
    """
    if form not in FORMS:
        raise ValueError(f"pointwise_packed: form must be one of {FORMS}, got {form!r}")
    if split not in SPLITS and split != "":
        raise ValueError(f"pointwise_packed: split must be one of {SPLITS} or '', got {split!r}")
    if kb < 1:
        raise ValueError(f"pointwise_packed: kb must be >= 1, got {kb}")
    cdef Py_ssize_t batch = out.shape[0], n_pixels = out.shape[2]
    cdef Py_ssize_t c_g = packed.shape[1], panel = packed.shape[2]
    cdef Py_ssize_t k_g = out.shape[1] // groups
    cdef Py_ssize_t n_panels = packed.shape[0] // groups
    if panel != 64 // sizeof(floating) or x.shape[1] != c_g * groups or n_panels * panel < k_g:
        raise ValueError(f"pointwise_packed: packed weight of shape {tuple(packed.shape)} does "
                         f"not fit x {tuple(x.shape)}, out {tuple(out.shape)}, groups={groups}")
    if batch == 0 or n_pixels == 0 or k_g == 0:
        return
    cdef int level = pcf_cpu_level()
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef Py_ssize_t x_sn = x.strides[0] // itemsize, x_sc = x.strides[1] // itemsize
    cdef Py_ssize_t x_sp = x.strides[2] // itemsize
    cdef Py_ssize_t o_sn = out.strides[0] // itemsize, o_sk = out.strides[1] // itemsize
    cdef Py_ssize_t o_sp = out.strides[2] // itemsize
    cdef bint hwc = form == "hwc"
    cdef Py_ssize_t tile
    if floating is float:
        tile = pcf_pw_variants[level].f32.hwc_rows if hwc else pcf_pw_variants[level].f32.chw_cols
    else:
        tile = pcf_pw_variants[level].f64.hwc_rows if hwc else pcf_pw_variants[level].f64.chw_cols
    # Enough tasks per (sample, group) that all of them make a multiple of the team size.
    cdef Py_ssize_t units = batch * groups
    cdef Py_ssize_t want = max(1, n_threads // math.gcd(units, n_threads))
    cdef Py_ssize_t n_tiles = (n_pixels + tile - 1) // tile
    if split == "":
        split = "channels" if n_pixels < SPLIT_CHANNELS_BELOW and n_panels > 1 else "pixels"
    cdef Py_ssize_t n_pblocks = min(want, n_tiles) if split == "pixels" else 1
    cdef Py_ssize_t n_qblocks = min(want, n_panels) if split == "channels" else 1
    cdef Py_ssize_t block_pixels = (n_tiles + n_pblocks - 1) // n_pblocks * tile
    cdef Py_ssize_t block_panels = (n_panels + n_qblocks - 1) // n_qblocks
    # "hwc" tiles into an output whose channels are not contiguous store a task's outputs pixel
    # by pixel in a staging buffer first (whole vectors), then copy them; tasks take few enough
    # pixels that it stays within STAGE_BYTES.
    cdef bint staged = hwc and o_sk != 1
    if staged:
        block_pixels = min(block_pixels, max(
            1, STAGE_BYTES // (block_panels * panel * sizeof(floating) * tile)) * tile)
    n_pblocks = (n_pixels + block_pixels - 1) // block_pixels
    n_qblocks = (n_panels + block_panels - 1) // block_panels
    cdef Py_ssize_t n_tasks = units * n_pblocks * n_qblocks

    cdef const floating* x0 = &x[0, 0, 0]
    cdef floating* o0 = &out[0, 0, 0]
    cdef const floating* w0 = &packed[0, 0, 0]
    cdef const floating* b0 = &bias[0] if bias.shape[0] > 0 else NULL
    cdef Py_ssize_t buffer_size = pcf_pw_buffer_elements(kb) * sizeof(floating)
    cdef Py_ssize_t stage_size = block_pixels * block_panels * panel * sizeof(floating) * staged
    cdef Py_ssize_t task, n, g, rest, p0, p1, q0, q1
    cdef floating* buf
    cdef floating* stage
    cdef unsigned int fp_saved
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    cdef pcf_interrupt stop
    pcf_interrupt_start(&stop)
    with nogil, parallel(num_threads=n_threads):
        fp_saved = pcf_flush_subnormals_begin()
        buf = <floating*> thread_buffer(buffer_size)
        stage = <floating*> thread_buffer(stage_size) if staged else NULL
        if buf == NULL or (staged and stage == NULL):
            out_of_memory[0] = 1
        for task in prange(n_tasks, schedule="static"):
            if pcf_interrupted(&stop) or out_of_memory[0]:
                continue
            p0 = (task % n_pblocks) * block_pixels
            p1 = min(p0 + block_pixels, n_pixels)
            rest = task // n_pblocks
            q0 = (rest % n_qblocks) * block_panels
            q1 = min(q0 + block_panels, n_panels)
            rest = rest // n_qblocks
            g = rest % groups
            n = rest // groups
            if floating is float:
                pcf_pw_variants[level].f32.task(
                    x0 + n * x_sn + g * c_g * x_sc, x_sc, x_sp, o0 + n * o_sn + g * k_g * o_sk,
                    o_sk, o_sp, w0 + g * n_panels * c_g * panel,
                    b0 + g * k_g if b0 != NULL else NULL, c_g, k_g, p0, p1, q0, q1, kb, hwc,
                    buf, stage)
            else:
                pcf_pw_variants[level].f64.task(
                    x0 + n * x_sn + g * c_g * x_sc, x_sc, x_sp, o0 + n * o_sn + g * k_g * o_sk,
                    o_sk, o_sp, w0 + g * n_panels * c_g * panel,
                    b0 + g * k_g if b0 != NULL else NULL, c_g, k_g, p0, p1, q0, q1, kb, hwc,
                    buf, stage)
        free(buf)
        free(stage)
        pcf_flush_subnormals_end(fp_saved)
    raise_if_interrupted(&stop)
    if out_of_memory[0]:
        raise MemoryError(f"pointwise_packed: no {buffer_size + stage_size} bytes for a "
                          "thread's buffers")
