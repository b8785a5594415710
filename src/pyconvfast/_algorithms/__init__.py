"""The algorithms pyconvfast can run: one module per algorithm, each registering itself.

How a call reaches a kernel::

    pcf.conv2d(x, w, ...)            front end (_conv, _transpose, _separable, _plan, ...)
        |  arguments checked, a ConvProblem made (_api, _core.problem)
        v
    tuning.autotune.choose(problem)  the cache, else the heuristic's order or a timing run
        |  an algorithm name and its params
        v
    registry.get(name)               an Algorithm: supports / prepare / run / param_space
        |  prepare(problem, weight) once per weight (a Plan keeps it), run(...) per call
        v
    _lib/<family>/...                the Cython + OpenMP kernel (SIMD level chosen at run time)

The modules, one per registered name (``pcf.list_algorithms()``):

======================  ===================================================================
``direct``              :mod:`.direct`: every problem, read in place, SIMD register tiles
``im2col``              :mod:`.im2col`: lowering + BLAS GEMM; 1x1 layers multiply in place
``pointwise_packed``    :mod:`.pointwise`: 1x1 layers, our own packed GEMM micro-kernels
``depthwise``           :mod:`.depthwise`: one input channel per group
``winograd_f*x*_*x*``   :mod:`.winograd`: 2-D 3x3 and 5x5 stride 1 (dilated by phases)
``fft``                 :mod:`.fft`: overlap-save real FFTs, large kernels
``grouped``             :mod:`.grouped`: few channels per group, all groups in one kernel
``separable``           :mod:`.separable`: rank-1 kernels as two 1-D passes (:mod:`.passes`)
``transpose_gemm``      :mod:`.transpose_gemm`: transposed, GEMM + col2im
``transpose_subpixel``  :mod:`.transpose_subpixel`: transposed, stride^d phase convolutions
``transpose_direct``    :mod:`.transpose_direct`: transposed, exact-order gather loop
======================  ===================================================================

:mod:`.registry` holds the :class:`~.registry.Algorithm` record and the lookup functions;
:mod:`.transpose_taps` what the transposed algorithms share. Importing this package registers
every algorithm, in the order above (the order ``list_algorithms`` shows and ties resolve by).
"""

from pyconvfast._algorithms import direct  # noqa: F401 (each import registers an algorithm)
from pyconvfast._algorithms import im2col  # noqa: F401
from pyconvfast._algorithms import pointwise  # noqa: F401
from pyconvfast._algorithms import depthwise  # noqa: F401
from pyconvfast._algorithms import winograd  # noqa: F401
from pyconvfast._algorithms import fft  # noqa: F401
from pyconvfast._algorithms import grouped  # noqa: F401
from pyconvfast._algorithms import separable  # noqa: F401
from pyconvfast._algorithms import transpose_gemm  # noqa: F401
from pyconvfast._algorithms import transpose_subpixel  # noqa: F401
from pyconvfast._algorithms import transpose_direct  # noqa: F401
