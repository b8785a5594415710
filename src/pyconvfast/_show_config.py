"""``pcf.show_config()``: what pyconvfast runs on, for bug reports and for checking a setup.

It reads every layer (settings, OpenMP, SIMD dispatch, BLAS, the tuning cache), so it sits above
them all, apart from :mod:`pyconvfast._config`, which the layers themselves read.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import TextIO

import numpy
import scipy

from pyconvfast.tuning.store import get_cache
from pyconvfast._config import get_config
from pyconvfast._lib.cpu.levels import simd_level, simd_levels
from pyconvfast._lib.common.openmp_info import max_threads, openmp_enabled
from pyconvfast._core.threads import blas_threads, thread_limit
from pyconvfast._version import __version__


def show_config(file: TextIO | None = None) -> None:
    """Print what pyconvfast runs on: versions, OpenMP, SIMD levels, BLAS, threads, settings and
    the tuning cache.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    None

    Examples
    --------
    >>> import io
    >>> import pyconvfast as pcf
    >>> text = io.StringIO()
    >>> pcf.show_config(file=text)
    >>> "precision" in text.getvalue() and "BLAS" in text.getvalue()
    True
    """
    config = get_config()
    lines = [
        f"pyconvfast {__version__}, Python {platform.python_version()}, NumPy {numpy.__version__},"
        f" SciPy {scipy.__version__}",
        f"platform: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs",
        f"OpenMP: {'yes' if openmp_enabled() else 'no (a serial build)'}, default team "
        f"{max_threads()} threads, at most {thread_limit()} per call",
        f"SIMD levels: detected {', '.join(simd_levels())}; in use (every kernel) {simd_level()}",
    ]
    for lib in blas_threads.describe():
        lines.append(f"BLAS (SciPy's): {lib.get('internal_api')} {lib.get('version')}, "
                     f"{lib.get('architecture')}, {lib.get('threading_layer')}, "
                     f"{lib.get('num_threads')} threads")
    for name, value in sorted(config.items()):
        lines.append(f"{name}: {value}")
    cache = get_cache()
    try:
        count: int | str = len(cache.entries())
    except Exception as error:  # noqa: BLE001  (a report must not fail on a bad cache)
        count = f"unreadable ({error})"
    lines.append(f"tuning cache: {cache.path} ({count} entries for this machine)")
    print("\n".join(lines), file=file or sys.stdout)
