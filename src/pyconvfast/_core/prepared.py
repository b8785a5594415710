"""Prepared weights kept for plain calls, so that a weight seen again is not prepared again.

A plan prepares its weight once (packs it, transforms it for Winograd, takes its spectra for
FFT); a plain call ``pcf.conv2d(x, w)`` used to do it on every call, which made a plain call on
a Winograd layer cost up to 4x a plan's. Here a plain call hashes its weight's bytes (xxHash's
XXH3, at memory speed: about 0.1 ms for a 9 MiB weight) and keeps what it prepared under
(problem, algorithm, hash, strides), least recently used first out, up to the ``prepared_mb``
setting (``PYCONVFAST_PREPARED_MB``, 256 MiB by default; 0 keeps nothing):

* a weight changed in place has another hash, so it is prepared again (the hash, not the array's
  identity, is the key: a kept entry never serves other contents);
* an entry is kept from the second call that sees the same contents on, so that a weight that
  changes on every call (a training loop) costs only its hash, not a copy per call;
* a kept entry owns its memory: any array of it that shares memory with the caller's weight (a
  view the algorithm keeps for its direct path) is copied first, so that a later change of that
  array cannot reach a kept entry.

:func:`seen_before` tells ``auto`` whether the call may run the plan's choice (the fastest run
once prepared) rather than the call's (fastest with the preparation counted).
"""

import collections
import threading

import numpy as np
import xxhash

from pyconvfast._config import get_setting

# Hashes of weights seen by plain calls, newest last (about 100 bytes each).
SEEN_MAX = 1024

_lock = threading.Lock()
# key -> (prepared, bytes)
_entries: collections.OrderedDict[object, tuple[object, int]] = collections.OrderedDict()
_seen: collections.OrderedDict[object, None] = collections.OrderedDict()
_kept_bytes = 0


def fingerprint(weight):
    """What identifies a weight's contents: ``(hash, shape, strides, dtype)``, or None for a
    weight that is not contiguous, or when the ``prepared_mb`` setting keeps nothing (it is
    then prepared on every call, and not hashed).

    Parameters
    ----------
    weight : ndarray

    Returns
    -------
    tuple or None

    Examples
    --------
    >>> import numpy as np
    >>> w = np.ones((4, 3, 3, 3), np.float32)
    >>> before = fingerprint(w)
    >>> w[0, 0, 0, 0] = 2
    >>> fingerprint(w) == before
    False
    """
    if not get_setting("prepared_mb"):
        return None
    if weight.flags.c_contiguous:
        data = weight
    elif weight.flags.f_contiguous:
        data = weight.T
    else:
        return None
    return (xxhash.xxh3_64_intdigest(data), weight.shape, weight.strides, weight.dtype.str)


def seen_before(key):
    """Whether a plain call saw a weight of fingerprint ``key`` before; records it.

    Parameters
    ----------
    key : tuple or None
        From :func:`fingerprint`.

    Returns
    -------
    bool
    """
    if key is None:
        return False
    with _lock:
        seen = key in _seen
        _seen[key] = None
        _seen.move_to_end(key)
        while len(_seen) > SEEN_MAX:
            _seen.popitem(last=False)
    return seen


def _nbytes(prepared):
    if isinstance(prepared, np.ndarray):
        return prepared.nbytes
    if isinstance(prepared, (tuple, list)):
        return sum(_nbytes(item) for item in prepared)
    if isinstance(prepared, dict):
        return sum(_nbytes(item) for item in prepared.values())
    return int(getattr(prepared, "nbytes", 0) or 0) + int(
        getattr(getattr(prepared, "weight", None), "nbytes", 0) or 0)


def _owned(prepared, weight):
    """``prepared`` with every array that may share memory with ``weight`` copied."""
    if isinstance(prepared, np.ndarray):
        if not np.may_share_memory(prepared, weight):
            return prepared
        copy = np.empty_like(prepared)
        np.copyto(copy, prepared)
        return copy
    if isinstance(prepared, (tuple, list)):
        return type(prepared)(_owned(item, weight) for item in prepared)
    if isinstance(prepared, dict):
        return {name: _owned(item, weight) for name, item in prepared.items()}
    return prepared  # an object of the algorithm's own (fft's spectra) holds copies already


def kept(problem, name, key):
    """The prepared weight kept for these contents and algorithm ``name``, or None.

    Parameters
    ----------
    problem : ConvProblem or ConvTransposeProblem
    name : str
        The algorithm's name.
    key : tuple or None
        ``fingerprint(weight)``.

    Returns
    -------
    object or None
    """
    if key is None:
        return None
    entry_key = (problem, name, key)
    with _lock:
        entry = _entries.get(entry_key)
        if entry is None:
            return None
        _entries.move_to_end(entry_key)
        return entry[0]


def prepared_weight(problem, algorithm, weight, weight5, key, keep):
    """The weight ``algorithm`` runs on: a kept one for these contents, or prepared now.

    Parameters
    ----------
    problem : ConvProblem or ConvTransposeProblem
    algorithm : Algorithm
    weight : ndarray
        The caller's weight, as passed.
    weight5 : ndarray
        Its 5-D view, what ``algorithm.prepare`` takes.
    key : tuple or None
        ``fingerprint(weight)``.
    keep : bool
        Whether to keep what is prepared now (the contents were seen before).

    Returns
    -------
    object
        What ``algorithm.prepare(problem, weight5)`` returns, or an equal kept copy.
    """
    global _kept_bytes
    if key is None:
        return algorithm.prepare(problem, weight5)
    entry_key = (problem, algorithm.name, key)
    found = kept(problem, algorithm.name, key)
    if found is not None:
        return found
    prepared = algorithm.prepare(problem, weight5)
    limit = get_setting("prepared_mb") * 2**20
    if not keep or not limit:
        return prepared
    owned = _owned(prepared, weight)
    size = _nbytes(owned)
    if size > limit:
        return prepared
    with _lock:
        if entry_key not in _entries:
            _entries[entry_key] = (owned, size)
            _kept_bytes += size
        while _kept_bytes > limit and _entries:
            _, (_, dropped) = _entries.popitem(last=False)
            _kept_bytes -= dropped
    return owned


def clear():
    """Forget every kept prepared weight and seen hash (what ``pcf.tuning.clear`` also does
    for the process's remembered choices).

    Examples
    --------
    >>> clear()
    >>> kept_bytes()
    0
    """
    global _kept_bytes
    with _lock:
        _entries.clear()
        _seen.clear()
        _kept_bytes = 0


def kept_bytes():
    """Bytes of the prepared weights kept now.

    Returns
    -------
    int
    """
    return _kept_bytes
