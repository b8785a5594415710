# The one process-wide SIMD level (pyconvfast._lib.cpu.levels). A kernel family with SIMD variants
# includes cpu/dispatch.h through this file and calls bind_level() once at import: its copy of
# the header then reads the level of this module (pcf_cpu_level()), so one set_simd_level()
# switches every family.

cdef extern from "cpu/dispatch.h" nogil:
    enum: PCF_N_LEVELS
    int pcf_cpu_max_level()
    int pcf_cpu_level()
    void pcf_cpu_bind(const int* cell)


cdef const int* level_cell() noexcept nogil


cdef inline void bind_level() noexcept nogil:
    pcf_cpu_bind(level_cell())
