# Flush-to-zero for the kernels (see fpstate.h): in every thread of a parallel region,
#     saved = pcf_flush_subnormals_begin()   ... work ...   pcf_flush_subnormals_end(saved)
cdef extern from "common/fpstate.h" nogil:
    unsigned int pcf_flush_subnormals_begin()
    void pcf_flush_subnormals_end(unsigned int saved)
    int pcf_fpstate_supported()
    long pcf_fpstate_get()
