"""Process-wide settings, and the one place that reads their environment variables.

=================  ==========================  ===========================================
setting            environment variable        values (default)
=================  ==========================  ===========================================
``precision``      ``PYCONVFAST_PRECISION``    "fast" (default) or "accurate"
``tune``           ``PYCONVFAST_TUNE``         "measure" (default), "estimate",
                                               "exhaustive", "off"
``cache_dir``      ``PYCONVFAST_CACHE_DIR``    a folder (default: the platform's user cache)
``n_threads``      (``OMP_NUM_THREADS``,       an int (default: OpenMP's default)
                   read by OpenMP itself)
``workspace_mb``   ``PYCONVFAST_WORKSPACE_MB`` MiB of work buffers per call (128)
``prepared_mb``    ``PYCONVFAST_PREPARED_MB``  MiB of prepared weights kept for plain calls
                                               (256; 0 keeps none)
``simd``           ``PYCONVFAST_SIMD``         "baseline", "avx2", "avx512f" (default: the
                                               best this CPU has)
=================  ==========================  ===========================================

``precision``: "fast" lets ``auto`` pick any algorithm, Winograd and FFT included, whose
rounding error is bounded relative to whole tiles or blocks; "accurate" keeps only algorithms
within the plain summation bound, which also leave NaN and infinities where a plain summation
puts them (docs/guide/guarantees.rst), and asking for another by name is a ValueError.

Where a value comes from, first found: the call's own argument (``precision=``,
``n_threads=``); the innermost :func:`config_context` of this thread (or asyncio task);
:func:`set_config`; the environment variable, read at each use so that a change takes effect at
the next call; the default.

``simd`` is the one exception: the SIMD level of the kernels is process-wide state
(:mod:`pyconvfast._lib.cpu.levels`), capped at what the CPU has. ``PYCONVFAST_SIMD`` is read at
import and whenever :func:`set_config` sets ``simd`` (None: back to the variable, else the best
level); :func:`config_context` sets it on entry and puts back the level it found on exit, for
every thread of the process, not only its own. ``get_config()["simd"]`` is the level in use.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from pyconvfast._lib.common.openmp_info import max_threads
from pyconvfast._lib.cpu.levels import SIMD_LEVELS, set_simd_level, simd_level
from pyconvfast._typing import Config, Precision, Settings

if TYPE_CHECKING:  # typing.Unpack is new in Python 3.11
    from typing_extensions import Unpack

_Check = Callable[[Any, str], Any]

PRECISIONS = ("fast", "accurate")
TUNE_MODES = ("measure", "estimate", "exhaustive", "off")
PRECISION_ENV_VAR = "PYCONVFAST_PRECISION"
TUNE_ENV_VAR = "PYCONVFAST_TUNE"
CACHE_DIR_ENV_VAR = "PYCONVFAST_CACHE_DIR"
WORKSPACE_ENV_VAR = "PYCONVFAST_WORKSPACE_MB"
PREPARED_ENV_VAR = "PYCONVFAST_PREPARED_MB"
SIMD_ENV_VAR = "PYCONVFAST_SIMD"


def _shown(value: Any, name: str) -> str:
    """How a bad value is quoted: ``name=value`` for an argument, the bare text read from an
    environment variable (whose name, in capitals, already leads the message)."""
    return repr(value) if name.isupper() else f"{name}={value!r}"


def _checked_choice(choices: tuple[str, ...]) -> _Check:
    def check(value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {_shown(value, name)}")
        return value
    return check


def _checked_cache_dir(value: Any, name: str) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{name} must be a folder path, got {_shown(value, name)}")
    return os.path.abspath(os.path.expanduser(os.fspath(value)))


def _checked_threads(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {_shown(value, name)}")
    return value


def _checked_megabytes(allow_zero: bool) -> _Check:
    def check(value: Any, name: str) -> float:
        try:
            megabytes = float(value)
        except (TypeError, ValueError):
            megabytes = math.nan
        if isinstance(value, bool) or not (0 <= megabytes < 2**40 if allow_zero
                                           else 0 < megabytes < 2**40):
            kind = "non-negative" if allow_zero else "positive"
            raise ValueError(f"{name} must be a {kind} number of MiB, got {_shown(value, name)}")
        return megabytes
    return check


# setting: (environment variable or None, check(value, name), default)
_SETTINGS: dict[str, tuple[str | None, _Check, Any]] = {
    "precision": (PRECISION_ENV_VAR, _checked_choice(PRECISIONS), "fast"),
    "tune": (TUNE_ENV_VAR, _checked_choice(TUNE_MODES), "measure"),
    "cache_dir": (CACHE_DIR_ENV_VAR, _checked_cache_dir, None),
    "n_threads": (None, _checked_threads, None),
    "workspace_mb": (WORKSPACE_ENV_VAR, _checked_megabytes(False), 128.0),
    "prepared_mb": (PREPARED_ENV_VAR, _checked_megabytes(True), 256.0),
    "simd": (SIMD_ENV_VAR, _checked_choice(SIMD_LEVELS), None),
}
_UNSET = object()
# os.environ keeps its contents in a dict keyed by encoded names, updated by every change made
# through os.environ; its Mapping ``get`` encodes the name and, for a name that is not set,
# raises and catches a KeyError: 0.8-1.6 us, read three times by a plain call. The settings'
# names are encoded once here and looked up in that dict directly (the same contents, so a
# change still takes effect at the next call); without such a dict, os.environ.get.
_ENVIRON_DATA = getattr(os.environ, "_data", None)
if not isinstance(_ENVIRON_DATA, dict) or not hasattr(os.environ, "decodevalue"):
    _ENVIRON_DATA = None
_ENCODED_ENV_VARS = {name: os.environ.encodekey(env_var) if _ENVIRON_DATA is not None else None
                     for name, (env_var, _, _) in _SETTINGS.items() if env_var is not None}


def _environment_text(name: str, env_var: str) -> str | None:
    """The text of setting ``name``'s environment variable ``env_var``, or None."""
    if _ENVIRON_DATA is None:
        return os.environ.get(env_var)
    raw = _ENVIRON_DATA.get(_ENCODED_ENV_VARS[name])
    return None if raw is None else os.environ.decodevalue(raw)


_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "pyconvfast_config", default={})
_global: dict[str, Any] = {}


def get_setting(name: str) -> Any:
    """The value of setting ``name`` now (see the module docstring for where it comes from).

    Parameters
    ----------
    name : str
        One of ``precision``, ``tune``, ``cache_dir``, ``n_threads``, ``workspace_mb``,
        ``prepared_mb``, ``simd``.

    Returns
    -------
    object
        The value; ``cache_dir``, ``n_threads`` and ``simd`` are None when left to their
        platform default.

    Examples
    --------
    >>> get_setting("precision") in PRECISIONS
    True
    """
    scoped = _context.get()
    if name in scoped:
        return scoped[name]
    if name in _global:
        return _global[name]
    env_var, check, default = _SETTINGS[name]
    if env_var is not None:
        text = _environment_text(name, env_var)
        if text:
            return check(text, env_var)
    return default


def resolve_precision(precision: Precision | None = None) -> Precision:
    """The precision a call runs with: ``precision`` if given, else the configured one.

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
        return cast("Precision", _SETTINGS["precision"][1](precision, "precision"))
    return cast("Precision", get_setting("precision"))


def _checked(settings: Mapping[str, object]) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; the settings are {sorted(_SETTINGS)}")
    return {name: None if value is None else _SETTINGS[name][1](value, name)
            for name, value in settings.items()}


def get_config() -> Config:
    """The settings that calls run with where they do not name them.

    Parameters
    ----------
    None

    Returns
    -------
    dict
        ``precision``, ``tune``, ``cache_dir`` (the folder in use), ``n_threads`` (the
        default thread count of a call), ``workspace_mb``, ``prepared_mb``, ``simd`` (the SIMD
        level in use).

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> with pcf.config_context(precision="accurate", tune="estimate"):
    ...     config = pcf.get_config()
    >>> config["precision"], config["tune"]
    ('accurate', 'estimate')
    """
    config = {name: get_setting(name) for name in _SETTINGS}
    config["cache_dir"] = str(cache_dir())
    if config["n_threads"] is None:
        config["n_threads"] = max(1, max_threads())
    config["simd"] = simd_level()
    return cast("Config", config)


def _apply_simd() -> None:
    """Set the kernels' SIMD level (process-wide) to the ``simd`` setting, None: the best."""
    set_simd_level(get_setting("simd"))


def cache_dir() -> pathlib.Path:
    """The tuning cache's folder: the ``cache_dir`` setting, else the platform's user cache
    folder (``platformdirs.user_cache_dir("pyconvfast")``).

    Parameters
    ----------
    None

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> with pcf.config_context(cache_dir="/tmp/pyconvfast-example"):
    ...     str(cache_dir())
    '/tmp/pyconvfast-example'
    """
    chosen = get_setting("cache_dir")
    if chosen:
        return pathlib.Path(chosen)
    import platformdirs

    return pathlib.Path(platformdirs.user_cache_dir("pyconvfast"))


def set_config(**settings: Unpack[Settings]) -> None:
    """Set process-wide values of settings; None puts one back to its environment variable or
    default.

    Parameters
    ----------
    **settings
        ``precision``, ``tune``, ``cache_dir``, ``n_threads``, ``workspace_mb``,
        ``prepared_mb``, ``simd``
        (applied at once, process-wide).

    Returns
    -------
    None

    Raises
    ------
    TypeError
        For an unknown setting.
    ValueError
        For a bad value, naming it.

    Examples
    --------
    >>> import pyconvfast as pcf
    >>> pcf.set_config(precision="accurate")
    >>> pcf.get_config()["precision"]
    'accurate'
    >>> pcf.set_config(precision=None)
    """
    for name, value in _checked(settings).items():
        if value is None:
            _global.pop(name, None)
        else:
            _global[name] = value
    if "simd" in settings:
        _apply_simd()


@contextlib.contextmanager
def config_context(**settings: Unpack[Settings]) -> Iterator[None]:
    """Run the enclosed calls with these settings, in this thread (or asyncio task) only.

    Parameters
    ----------
    **settings
        ``precision``, ``tune``, ``cache_dir``, ``n_threads``, ``workspace_mb``,
        ``prepared_mb``, ``simd``; a
        value of None leaves that setting as it is outside. ``simd`` is process-wide: it
        switches the kernels of every thread until the context exits.

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
    scoped = {**_context.get(), **{name: value for name, value in _checked(settings).items()
                                   if value is not None}}
    token = _context.set(scoped)
    simd_before = simd_level()
    try:
        if settings.get("simd") is not None:
            _apply_simd()
        yield
    finally:
        _context.reset(token)
        if settings.get("simd") is not None:
            set_simd_level(simd_before)


_apply_simd()
