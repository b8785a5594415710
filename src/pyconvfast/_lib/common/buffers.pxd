# Per-thread work buffers for the kernels' parallel blocks (free them with libc's free).

cdef extern from "stdlib.h" nogil:
    void* aligned_alloc(size_t alignment, size_t size)


cdef inline void* thread_buffer(size_t size) noexcept nogil:
    """``size`` bytes on 64-byte cache lines of their own, or NULL.

    Small buffers that two threads write in their inner loops must not share a cache line: with
    plain malloc, the depthwise kernel's tap buffers of two threads did, and a stride-2 MobileNet
    layer ran 50x slower on 2 threads than on 1 (false sharing)."""
    return aligned_alloc(64, (size + 63) // 64 * 64)
