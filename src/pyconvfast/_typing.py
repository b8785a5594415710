"""The type aliases of the public signatures, for type checkers and editors.

Nothing checks them at run time: every function validates its arguments itself (and says in a
TypeError or ValueError what it got), so the aliases are as wide as what the functions accept,
and the functions' docstrings stay the reference. Integers are ``SupportsIndex`` because the
functions take anything ``operator.index`` takes (``numpy.int64`` included), bools excepted.
"""

import os
from collections.abc import Sequence
from typing import Any, Literal, SupportsIndex, TypeAlias, TypedDict

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["ArrayLike", "DTypeLike", "FloatArray", "Ints", "Padding", "PaddingMode", "Precision",
           "Layout", "Layout1d", "Layout2d", "Layout3d", "Shape", "TuneMode", "SimdLevel",
           "Settings", "Config"]

FloatArray: TypeAlias = NDArray[np.floating[Any]]
"""A result: float32 or float64, the dtype of the input."""

Ints: TypeAlias = SupportsIndex | Sequence[SupportsIndex]
"""An int, or one int per spatial axis (``stride``, ``dilation``, ``output_padding``)."""

Padding: TypeAlias = (SupportsIndex | Sequence[SupportsIndex]
                      | Sequence[tuple[SupportsIndex, SupportsIndex]] | Literal["valid", "same"])
"""An int, one int per axis, one ``(before, after)`` pair per axis, "valid" or "same"."""

PaddingMode: TypeAlias = Literal["zeros", "reflect", "replicate", "circular"]

Precision: TypeAlias = Literal["fast", "accurate"]

Layout1d: TypeAlias = Literal["NCL", "NLC"]
Layout2d: TypeAlias = Literal["NCHW", "NHWC"]
Layout3d: TypeAlias = Literal["NCDHW", "NDHWC"]
Layout: TypeAlias = Layout1d | Layout2d | Layout3d
"""Channels-first or channels-last, for 1, 2 or 3 spatial axes."""

Shape: TypeAlias = Sequence[SupportsIndex]
"""A shape given as a sequence of ints."""

TuneMode: TypeAlias = Literal["measure", "estimate", "exhaustive", "off"]

SimdLevel: TypeAlias = Literal["baseline", "avx2", "avx512f"]


class Settings(TypedDict, total=False):
    """The keyword arguments of ``set_config`` and ``config_context`` (None: unset)."""

    precision: Precision | None
    tune: TuneMode | None
    cache_dir: str | os.PathLike[str] | None
    n_threads: int | None
    workspace_mb: float | None
    prepared_mb: float | None
    simd: SimdLevel | None


class Config(TypedDict):
    """What ``get_config`` returns: every setting's value in use."""

    precision: Precision
    tune: TuneMode
    cache_dir: str
    n_threads: int
    workspace_mb: float
    prepared_mb: float
    simd: SimdLevel
