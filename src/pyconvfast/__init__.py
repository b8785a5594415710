"""pyconvfast: fast CPU convolutions for NumPy.

Every convolution family of deep learning on NumPy arrays, computed by Cython + OpenMP kernels,
with PyTorch's conventions (``(N, C, *spatial)`` activations, ``(C_out, C_in // groups, *kernel)``
weights, cross-correlation unless ``flip=True``).

>>> import numpy as np
>>> import pyconvfast as pcf
>>> x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
>>> w = np.ones((8, 3, 3, 3), dtype=np.float32)
>>> pcf.conv2d(x, w, padding=1).shape
(1, 8, 32, 32)
"""

from pyconvfast._config import config_context, get_config, set_config
from pyconvfast._conv import conv1d, conv2d, conv3d, conv_output_shape, list_algorithms
from pyconvfast._deform import deform_conv2d
from pyconvfast._plan import Plan, plan
from pyconvfast._algorithms.separable import separate_kernel
from pyconvfast._separable import (
    flattened_conv2d, separable_conv2d, spatially_separable_conv2d,
)
from pyconvfast._show_config import show_config
from pyconvfast._shuffle import channel_shuffle
from pyconvfast._core.threads import thread_limit
from pyconvfast._resize import resize_conv2d
from pyconvfast._transpose import conv_transpose1d, conv_transpose2d, conv_transpose3d
from pyconvfast._version import __version__
from pyconvfast import tuning

__all__ = [
    "__version__",
    "conv1d",
    "conv2d",
    "conv3d",
    "separable_conv2d",
    "spatially_separable_conv2d",
    "flattened_conv2d",
    "separate_kernel",
    "channel_shuffle",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv_output_shape",
    "deform_conv2d",
    "list_algorithms",
    "resize_conv2d",
    "plan",
    "Plan",
    "thread_limit",
    "config_context",
    "get_config",
    "set_config",
    "show_config",
    "tuning",
]
