/* The one instantiation pattern of the SIMD kernel templates: compiles the template header named
   by PCF_IMPL (a path from _lib/, e.g. "direct/blocked_impl.h") for float and double at every
   level this compiler can target (cpu/dispatch.h). Use:

       #define PCF_IMPL "grouped/simd_impl.h"
       #include "cpu/instantiate.h"

   For each instantiation the template sees
     PCF_T           the element type (float, double)
     PCF_TS          its suffix (f32, f64)
     PCF_LEVEL       the level number (0, 1, 2), for PCF_BY_LEVEL(...)
     PCF_LEVEL_NAME  the level's suffix (base, avx2, avx512f), for PCF_VARIANT(name)
     PCF_TARGET      the target attribute of its functions (empty at the baseline)
     PCF_VBYTES      the level's vector width in bytes (16, 32, 64)
   and is included with no guard. PCF_IMPL is undefined afterwards. No include guard here. */
#include "cpu/dispatch.h"

#ifndef PCF_IMPL
#error "define PCF_IMPL, the template header to instantiate, before including cpu/instantiate.h"
#endif

#define PCF_LEVEL 0
#define PCF_LEVEL_NAME base
#define PCF_TARGET
#define PCF_VBYTES 16
#define PCF_T float
#define PCF_TS f32
#include PCF_IMPL
#undef PCF_T
#undef PCF_TS
#define PCF_T double
#define PCF_TS f64
#include PCF_IMPL
#undef PCF_T
#undef PCF_TS
#undef PCF_LEVEL
#undef PCF_LEVEL_NAME
#undef PCF_TARGET
#undef PCF_VBYTES

#ifdef PCF_X86_DISPATCH
#define PCF_LEVEL 1
#define PCF_LEVEL_NAME avx2
#define PCF_TARGET PCF_TARGET_AVX2
#define PCF_VBYTES 32
#define PCF_T float
#define PCF_TS f32
#include PCF_IMPL
#undef PCF_T
#undef PCF_TS
#define PCF_T double
#define PCF_TS f64
#include PCF_IMPL
#undef PCF_T
#undef PCF_TS
#undef PCF_LEVEL
#undef PCF_LEVEL_NAME
#undef PCF_TARGET
#undef PCF_VBYTES

#define PCF_LEVEL 2
#define PCF_LEVEL_NAME avx512f
#define PCF_TARGET PCF_TARGET_AVX512F
#define PCF_VBYTES 64
#define PCF_T float
#define PCF_TS f32
#include PCF_IMPL
#undef PCF_T
#undef PCF_TS
#define PCF_T double
#define PCF_TS f64
#include PCF_IMPL
#undef PCF_T
#undef PCF_TS
#undef PCF_LEVEL
#undef PCF_LEVEL_NAME
#undef PCF_TARGET
#undef PCF_VBYTES
#endif

#undef PCF_IMPL
