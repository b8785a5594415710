/* Flush-to-zero inside the kernels, with the caller's floating-point state restored.

   Subnormal numbers (|x| < 1.2e-38 in float32, 2.2e-308 in float64) take a slow microcode path
   in many x86 CPUs' multipliers and adders. Every kernel therefore sets MXCSR's FTZ (results
   that would be subnormal become 0) and DAZ (subnormal inputs are read as 0) bits at the start
   of its parallel region, on every OpenMP thread, and puts the thread's whole MXCSR back, as it
   found it, at the end: the caller's thread, and the OpenMP pool threads that other code may
   reuse, leave a call in the state they entered it.

   MXCSR is per thread: threads BLAS starts itself keep their own state, which is why kernels call
   BLAS single-threaded from inside their OpenMP threads.

   x86 and x86-64 only (SSE); elsewhere these are no-ops and subnormals are computed as such. */
#ifndef PYCONVFAST_FPSTATE_H
#define PYCONVFAST_FPSTATE_H

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <xmmintrin.h>
/* FTZ is bit 15, DAZ bit 6 (DAZ exists on every SSE2 CPU, so on every x86-64). */
#define PCF_MXCSR_FTZ_DAZ 0x8040u
static inline unsigned int pcf_flush_subnormals_begin(void) {
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | PCF_MXCSR_FTZ_DAZ);
    return saved;
}
static inline void pcf_flush_subnormals_end(unsigned int saved) { _mm_setcsr(saved); }
static inline int pcf_fpstate_supported(void) { return 1; }
static inline long pcf_fpstate_get(void) { return (long) _mm_getcsr(); }
#else
static inline unsigned int pcf_flush_subnormals_begin(void) { return 0; }
static inline void pcf_flush_subnormals_end(unsigned int saved) { (void) saved; }
static inline int pcf_fpstate_supported(void) { return 0; }
static inline long pcf_fpstate_get(void) { return -1; }
#endif

#endif
