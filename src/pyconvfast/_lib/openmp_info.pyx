"""What the OpenMP runtime of this build offers, for the Python side."""

from pyconvfast._lib.openmp_helpers cimport pcf_omp_max_threads, pcf_openmp_enabled


def openmp_enabled():
    """True when the extensions were built with OpenMP."""
    return bool(pcf_openmp_enabled())


def max_threads():
    """OpenMP's default team size (honours OMP_NUM_THREADS); 1 in a serial build."""
    return int(pcf_omp_max_threads())
