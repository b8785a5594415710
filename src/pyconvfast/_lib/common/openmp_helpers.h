/* The one place OpenMP is included. Without OpenMP (a serial build) every helper answers as a
   single-threaded run would, so the kernels need no #ifdef of their own. */
#ifndef PYCONVFAST_OPENMP_HELPERS_H
#define PYCONVFAST_OPENMP_HELPERS_H

#ifdef _OPENMP
#include <omp.h>
static inline int pcf_openmp_enabled(void) { return 1; }
static inline int pcf_omp_max_threads(void) { return omp_get_max_threads(); }
static inline int pcf_omp_thread_num(void) { return omp_get_thread_num(); }
#else
static inline int pcf_openmp_enabled(void) { return 0; }
static inline int pcf_omp_max_threads(void) { return 1; }
static inline int pcf_omp_thread_num(void) { return 0; }
#endif

#endif
