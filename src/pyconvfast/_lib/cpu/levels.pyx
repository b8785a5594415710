"""The SIMD level of every kernel family: detected once, set in one place.

The kernels with run-time-dispatched SIMD variants (the blocked ``direct`` kernel, ``depthwise``,
the fused depthwise-separable kernel, ``grouped``) are compiled for the levels of
:data:`SIMD_LEVELS` (``cpu/dispatch.h``) and each lists its variants in a table indexed by level
(its ``VARIANTS``). They all read the one level kept here, the best the CPU has at import;
:func:`set_simd_level` (or ``pcf.set_config(simd=...)``) changes it for the whole process.
"""
from collections import namedtuple

SIMD_LEVELS = ("baseline", "avx2", "avx512f")
"""Every level a build knows, lowest first (a level includes those below it)."""

Variant = namedtuple("Variant", ["family", "level", "name"])
Variant.__doc__ = """One row of a kernel family's variant table: the family, the SIMD level it
runs at and a name that says what it is (e.g. its register tile)."""

# The level in use: the int every kernel family's pcf_cpu_level() reads.
cdef int _level = 0


cdef const int* level_cell() noexcept nogil:
    return &_level


def simd_levels():
    """The levels this CPU can run, baseline first.

    Returns
    -------
    tuple of str
        A prefix of :data:`SIMD_LEVELS`.
    """
    return SIMD_LEVELS[:pcf_cpu_max_level() + 1]


def simd_level():
    """The level every kernel family uses now (``"baseline"``, ``"avx2"`` or ``"avx512f"``)."""
    return SIMD_LEVELS[_level]


def set_simd_level(level):
    """Use ``level`` (capped at what the CPU has) in every kernel family from now on.

    Parameters
    ----------
    level : {"baseline", "avx2", "avx512f"} or None
        None: the best level of this CPU.

    Returns
    -------
    str
        The level set: ``level``, or the best this CPU has if it has not ``level``.

    Process-wide; not to be called while a convolution runs. Results of the ``depthwise`` kernel
    are the same at every level; the others fuse multiply and add above the baseline.
    """
    global _level
    if level is None:
        _level = pcf_cpu_max_level()
    elif level not in SIMD_LEVELS:
        raise ValueError(f"SIMD level must be one of {SIMD_LEVELS} or None, got {level!r}")
    else:
        _level = min(SIMD_LEVELS.index(level), pcf_cpu_max_level())
    return SIMD_LEVELS[_level]


def variants_on_this_cpu(variants):
    """The rows of a family's ``VARIANTS`` table whose level this CPU runs."""
    runnable = simd_levels()
    return tuple(variant for variant in variants if variant.level in runnable)


_level = pcf_cpu_max_level()
