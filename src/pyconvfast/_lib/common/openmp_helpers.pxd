# The OpenMP shim: every kernel takes its OpenMP symbols from here, never from `openmp` directly,
# so that a build without OpenMP still compiles (the header gives serial fallbacks).
cdef extern from "common/openmp_helpers.h" nogil:
    int pcf_openmp_enabled()
    int pcf_omp_max_threads()
    int pcf_omp_thread_num()
