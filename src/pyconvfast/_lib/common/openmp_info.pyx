"""What the OpenMP runtime of this build offers, for the Python side."""

from pyconvfast._lib.common.fpstate cimport pcf_fpstate_get, pcf_fpstate_supported
from pyconvfast._lib.common.openmp_helpers cimport pcf_omp_max_threads, pcf_openmp_enabled


def openmp_enabled():
    """True when the extensions were built with OpenMP."""
    return bool(pcf_openmp_enabled())


def max_threads():
    """OpenMP's default team size (honours OMP_NUM_THREADS); 1 in a serial build."""
    return int(pcf_omp_max_threads())


def fp_state():
    """The calling thread's MXCSR (SSE control and status) on x86, -1 elsewhere.

    For tests: every kernel must leave it as it found it (``fpstate.h``).
    """
    return int(pcf_fpstate_get())


def flushes_subnormals():
    """True where the kernels flush subnormals to zero (x86: MXCSR's FTZ and DAZ bits)."""
    return bool(pcf_fpstate_supported())
