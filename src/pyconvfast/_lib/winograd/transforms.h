/* Winograd F(m x m, r x r) transforms, written out for the float32 and float64 kernels:
   F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5).

   Transformed tiles are kept "tile index innermost": element xi of tile t lies at
   v[xi * stride + t], which is what the GEMMs want. Every transform is a loop of straight-line
   arithmetic over many tiles (or, for the vertical pass, over whole rows of the image), which
   the compiler vectorizes across tiles (the restrict qualifiers tell it the streams do not
   overlap), instead of a tiny matrix product per tile.

   The template below is included once per element type (WG_T, with WG_WIDE the wider type of
   the weight transform) with a name suffix (WG).
*/
#ifndef PYCONVFAST_WINOGRAD_TRANSFORMS_H
#define PYCONVFAST_WINOGRAD_TRANSFORMS_H

#include <stddef.h>

#if defined(_MSC_VER)
#define WG_RESTRICT __restrict
#else
#define WG_RESTRICT __restrict__
#endif

/* The iterations of the next loop are independent: the rows d[k * ds + t] written for
   different k never overlap (the compiler cannot know that ds >= n). */
#if defined(__clang__)
#define WG_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define WG_IVDEP _Pragma("GCC ivdep")
#else
#define WG_IVDEP
#endif

#if defined(__GNUC__)
#define WG_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define WG_ALWAYS_INLINE static inline
#endif

/* Most tiles transformed at once (one segment of a tile row): the rows they read and the
   intermediate results stay in L1. */
#define WG_CHUNK 64

/* Tile groups of m positions past a segment that its last tile reads, ceil((r - 1) / m);
   elements of one row of a segment (m phases of WG_CHUNK + that), and the scratch one thread
   needs for either transform of F(m x m, r x r): alpha = m + r - 1 rows, twice. */
#define WG_EXTRA(m, r) (((r) + (m) - 2) / (m))
#define WG_ROW(m, r) ((m) * (WG_CHUNK + WG_EXTRA(m, r)))
#define WG_SCRATCH(m, r) (2 * ((m) + (r) - 1) * WG_ROW(m, r))

#define WG_T float
#define WG_WIDE double
#define WG(name) name##_f32
#include "transforms_impl.h"
#undef WG_T
#undef WG_WIDE
#undef WG

#define WG_T double
#define WG_WIDE long double
#define WG(name) name##_f64
#include "transforms_impl.h"
#undef WG_T
#undef WG_WIDE
#undef WG

#endif
