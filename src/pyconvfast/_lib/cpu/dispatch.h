/* The one CPU dispatch of pyconvfast's kernels: instruction-set levels, their detection, the
   function-level target attributes that compile a variant for a level, and the process-wide level
   in use.

   The build has no -march flag, so a wheel runs on any x86-64 CPU. A kernel family that has SIMD
   variants compiles its template header once per (level, element type) through cpu/instantiate.h,
   with the target attribute of the level, and lists the variants in a table indexed by level;
   at run time it calls the row of pcf_cpu_level(). The level is one int that lives in the
   pyconvfast._lib.cpu.levels module; every extension that includes this header points its own
   pcf_cpu_level_cell at it once at import (levels.pxd's bind_level), so setting the level there
   switches every kernel family at once.

   Levels (a level includes those below it):
     0  baseline  what the build targets (SSE2 on x86-64), 16-byte vectors
     1  avx2      AVX2 + FMA, 32-byte vectors
     2  avx512f   AVX-512F (+ FMA), 64-byte vectors, 32 vector registers
   With a compiler other than GCC or Clang, or off x86, only the baseline exists. */
#ifndef PYCONVFAST_CPU_DISPATCH_H
#define PYCONVFAST_CPU_DISPATCH_H

#define PCF_LEVEL_BASELINE 0
#define PCF_LEVEL_AVX2 1
#define PCF_LEVEL_AVX512F 2
#define PCF_N_LEVELS 3

#if defined(__GNUC__) || defined(__clang__)
#define PCF_ALWAYS_INLINE __attribute__((always_inline))
#define PCF_GNU_VECTORS 1
#else
#define PCF_ALWAYS_INLINE
#define PCF_GNU_VECTORS 0
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define PCF_X86_DISPATCH 1
/* The one set of target strings. FMA is on at both SIMD levels; kernels that promise the same
   bits at every level are built with -ffp-contract=off (setup.py NO_FP_CONTRACT), so the
   compiler never fuses a * b + c on its own there. */
#define PCF_TARGET_AVX2 __attribute__((target("avx2,fma")))
#if defined(__clang__)
#define PCF_TARGET_AVX512F __attribute__((target("avx512f,fma"), min_vector_width(512)))
#else
#define PCF_TARGET_AVX512F __attribute__((target("avx512f,fma,prefer-vector-width=512")))
#endif
#endif

/* The best level this CPU (and OS) runs. */
static inline int pcf_cpu_max_level(void)
{
#ifdef PCF_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return PCF_LEVEL_AVX512F;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PCF_LEVEL_AVX2;
#endif
    return PCF_LEVEL_BASELINE;
}

/* The level in use: the int of pyconvfast._lib.cpu.levels once bound, baseline before. */
static const int* pcf_cpu_level_cell = 0;

static inline void pcf_cpu_bind(const int* cell) { pcf_cpu_level_cell = cell; }

static inline int pcf_cpu_level(void)
{
    return pcf_cpu_level_cell ? *pcf_cpu_level_cell : PCF_LEVEL_BASELINE;
}

/* Token pasting that expands its arguments first. */
#define PCF_CAT_(a, b) a##b
#define PCF_CAT(a, b) PCF_CAT_(a, b)

/* Inside an instantiation (cpu/instantiate.h defines PCF_LEVEL): the argument of that level,
   e.g. #define DB_P PCF_BY_LEVEL(2, 6, 12). */
#define PCF_BY_LEVEL(baseline, avx2, avx512f) \
    PCF_CAT(PCF_BY_LEVEL_, PCF_LEVEL)(baseline, avx2, avx512f)
#define PCF_BY_LEVEL_0(baseline, avx2, avx512f) baseline
#define PCF_BY_LEVEL_1(baseline, avx2, avx512f) avx2
#define PCF_BY_LEVEL_2(baseline, avx2, avx512f) avx512f

/* Inside an instantiation: `name` suffixed with its element type and level, e.g.
   PCF_VARIANT(pcf_db_tile) is pcf_db_tile_f32_avx2 in the float AVX2 instantiation. */
#define PCF_VARIANT(name) PCF_CAT(PCF_CAT(PCF_CAT(name, _), PCF_TS), PCF_CAT(_, PCF_LEVEL_NAME))

/* Outside: the variant of `name` for element type suffix TS (f32, f64) at a level, for the
   rows of a family's variant table. Off x86 only the baseline variant exists; its table repeats
   it (those rows are never used: pcf_cpu_max_level() is 0 there). */
#define PCF_AT_BASELINE(name, TS) name##_##TS##_base
#ifdef PCF_X86_DISPATCH
#define PCF_AT_AVX2(name, TS) name##_##TS##_avx2
#define PCF_AT_AVX512F(name, TS) name##_##TS##_avx512f
#else
#define PCF_AT_AVX2(name, TS) name##_##TS##_base
#define PCF_AT_AVX512F(name, TS) name##_##TS##_base
#endif

#endif
