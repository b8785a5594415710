/* Ctrl-C inside a long kernel.

   The kernels run without the GIL, so Python's SIGINT handler (which raises KeyboardInterrupt)
   could only run once a kernel returned: 9 to 16 s after Ctrl-C on a long layer. Instead, each
   kernel polls between its work items: the thread that called it (OpenMP thread 0, the master
   of every team it starts, or the only thread of a serial run) looks at the clock, and at most
   every PCF_INTERRUPT_PERIOD seconds takes the GIL and runs Python's pending signal handlers
   (PyErr_CheckSignals). If a handler raised, the exception stays set in that thread, `stop` is
   raised for every thread, and the remaining work items are skipped: each parallel region then
   ends normally (floating-point state restored, buffers and BLAS limits given back by the
   callers as after any call) and the kernel's `def` wrapper raises the exception.
   Only the main thread handles signals: from other threads the poll never stops anything. */
#ifndef PYCONVFAST_INTERRUPT_H
#define PYCONVFAST_INTERRUPT_H

#include <Python.h>
#include <time.h>

#include "openmp_helpers.h"

#define PCF_INTERRUPT_PERIOD 0.05

typedef struct {
    volatile int stop;     /* set once a signal handler raised; read by every thread */
    double next_check;     /* written by thread 0 only */
} pcf_interrupt;

static inline double pcf_monotonic_seconds(void)
{
    struct timespec now;
#ifdef CLOCK_MONOTONIC
    clock_gettime(CLOCK_MONOTONIC, &now);
#else
    timespec_get(&now, TIME_UTC);
#endif
    return (double) now.tv_sec + 1e-9 * (double) now.tv_nsec;
}

static inline void pcf_interrupt_start(pcf_interrupt* state)
{
    state->stop = 0;
    state->next_check = pcf_monotonic_seconds() + PCF_INTERRUPT_PERIOD;
}

/* True once the work should stop. Cheap (a clock read on thread 0, a load elsewhere) until
   the next check is due. */
static inline int pcf_interrupted(pcf_interrupt* state)
{
    if (state->stop) return 1;
    if (pcf_omp_thread_num() != 0) return 0;
    const double now = pcf_monotonic_seconds();
    if (now < state->next_check) return 0;
    state->next_check = now + PCF_INTERRUPT_PERIOD;
    PyGILState_STATE gil = PyGILState_Ensure();
    if (PyErr_CheckSignals() != 0) state->stop = 1;   /* the exception stays set */
    PyGILState_Release(gil);
    return state->stop;
}

#endif
