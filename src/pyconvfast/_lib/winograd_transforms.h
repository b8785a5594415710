/* Winograd F(m x m, 3 x 3) transforms, written out for the float32 and float64 kernels.

   The data of n tiles are kept "tile index innermost": element k of tile t lies at
   p[k * stride + t]. Every transform is then a loop over t of straight-line arithmetic on a
   few such streams, which the compiler vectorizes across tiles (the restrict qualifiers tell
   it the streams do not overlap), instead of a tiny matrix product per tile.

   The template below is included once per element type (WG_T) with a name suffix (WG).
*/
#ifndef PYCONVFAST_WINOGRAD_TRANSFORMS_H
#define PYCONVFAST_WINOGRAD_TRANSFORMS_H

#include <stddef.h>
#include <stdint.h>

#if defined(_MSC_VER)
#define WG_RESTRICT __restrict
#else
#define WG_RESTRICT __restrict__
#endif

/* Tiles transformed at once: the gathered tiles and the intermediate stay in L1. */
#define WG_CHUNK 64

/* Offsets equal to WG_ZERO_TAP mark rows/columns of a tile that fall on zero padding (a real
   offset can be negative, for negatively strided views, so -1 cannot be the marker). */
#define WG_ZERO_TAP PTRDIFF_MIN

#define WG_T float
#define WG(name) name##_f32
#include "winograd_transforms_impl.h"
#undef WG_T
#undef WG

#define WG_T double
#define WG(name) name##_f64
#include "winograd_transforms_impl.h"
#undef WG_T
#undef WG

#endif
