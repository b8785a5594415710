# Ctrl-C inside long kernels (interrupt.h says how). A kernel starts a state, polls it at the
# top of each work item (`if pcf_interrupted(&state): continue`), and after its parallel
# regions calls `raise_if_interrupted(&state)`, which raises what the signal handler raised.
cdef extern from "common/interrupt.h" nogil:
    ctypedef struct pcf_interrupt:
        int stop
    void pcf_interrupt_start(pcf_interrupt* state)
    int pcf_interrupted(pcf_interrupt* state)


cdef inline int raise_if_interrupted(pcf_interrupt* state) except -1:
    # -1 with the handler's exception set: Cython propagates it.
    return -1 if state.stop else 0
