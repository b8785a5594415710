"""Process-wide settings: one place that reads them, from the call, a context or the environment.

For now the one setting is ``precision`` (more join it: tuning mode, cache folder, threads):

* ``"fast"`` (the default): ``auto`` may pick any algorithm, Winograd and FFT included, whose
  rounding error is bounded relative to whole tiles or blocks (docs/guide/guarantees.rst);
* ``"accurate"``: only algorithms within the plain summation bound, which also leave NaN and
  infinities where a plain summation puts them. Asking for another by name is a ValueError.

A call's own ``precision=`` wins; else the innermost :func:`config_context`; else
:func:`set_config`'s value; else the environment variable ``PYCONVFAST_PRECISION``; else
``"fast"``.
"""

import contextlib
import contextvars
import os

PRECISIONS = ("fast", "accurate")
PRECISION_ENV_VAR = "PYCONVFAST_PRECISION"

_UNSET = object()
_context_precision = contextvars.ContextVar("pyconvfast_precision", default=None)
_global = {"precision": None}


def _checked_precision(value, name="precision"):
    if not isinstance(value, str) or value not in PRECISIONS:
        raise ValueError(f"{name} must be one of {PRECISIONS}, got {name}={value!r}")
    return value


def resolve_precision(precision=None):
    """The precision a call runs with: ``precision`` if given, else the configured default.

    Parameters
    ----------
    precision : {"fast", "accurate"} or None

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For any other value, or a bad ``PYCONVFAST_PRECISION``.

    Examples
    --------
    >>> resolve_precision("accurate")
    'accurate'
    """
    if precision is not None:
        return _checked_precision(precision)
    value = _context_precision.get()
    if value is not None:
        return value
    if _global["precision"] is not None:
        return _global["precision"]
    value = os.environ.get(PRECISION_ENV_VAR)
    if value is None or value == "":
        return "fast"
    return _checked_precision(value, PRECISION_ENV_VAR)


def get_config():
    """The settings calls run with when they do not name them.

    Parameters
    ----------
    None

    Returns
    -------
    dict
        ``{"precision": "fast" | "accurate"}``.

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> with pcf.config_context(precision="accurate"):
    ...     pcf.get_config()
    {'precision': 'accurate'}
    """
    return {"precision": resolve_precision()}


def set_config(precision=_UNSET):
    """Set the process-wide default of a setting (None: back to the environment's).

    Parameters
    ----------
    precision : {"fast", "accurate"} or None, optional

    Returns
    -------
    None

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> pcf.set_config(precision="accurate")
    >>> pcf.get_config()["precision"]
    'accurate'
    >>> pcf.set_config(precision=None)
    """
    if precision is not _UNSET:
        _global["precision"] = None if precision is None else _checked_precision(precision)


@contextlib.contextmanager
def config_context(precision=None):
    """Run the enclosed calls with these settings, in this thread (and task) only.

    Parameters
    ----------
    precision : {"fast", "accurate"}, optional

    Returns
    -------
    context manager

    Examples
    --------
    >>> import numpy as np
    >>> import pyconvfast as pcf
    >>> x = np.ones((1, 8, 16, 16), np.float32)
    >>> w = np.ones((8, 8, 3, 3), np.float32)
    >>> with pcf.config_context(precision="accurate"):
    ...     "winograd_f4x4_3x3" in pcf.list_algorithms(x, w)
    False
    """
    token = _context_precision.set(None if precision is None else _checked_precision(precision))
    try:
        yield
    finally:
        _context_precision.reset(token)
