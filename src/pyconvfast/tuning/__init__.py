"""The tuning cache, seen from the user: where it is, what it holds, and moving it around.

``algorithm="auto"`` times the usable algorithms the first time it sees a problem and keeps the
winner in a JSON file (FFTW calls it "wisdom"), so that the next process on the same machine
starts fast. The file is in ``$PYCONVFAST_CACHE_DIR`` when that is set, else in the platform's
user cache folder. Each entry is filed under a fingerprint of the machine (CPU and its vector
extensions, pyconvfast version, BLAS): entries made elsewhere are kept but not used.

>>> import os, tempfile
>>> import pyconvfast as pcf
>>> folder = tempfile.TemporaryDirectory()
>>> os.environ["PYCONVFAST_CACHE_DIR"] = folder.name   # a throwaway cache for the example
>>> pcf.tuning.cache_path().name
'tuning.json'
>>> pcf.tuning.report()
[]
>>> del os.environ["PYCONVFAST_CACHE_DIR"]; folder.cleanup()
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from pyconvfast.tuning import autotune
from pyconvfast.tuning import store

__all__ = ["cache_path", "report", "clear", "export", "load"]


def cache_path() -> pathlib.Path:
    """The tuning cache file of this process.

    ``$PYCONVFAST_CACHE_DIR/tuning.json`` when the variable is set (it is read at each call),
    else ``tuning.json`` in the platform's user cache folder
    (``platformdirs.user_cache_dir("pyconvfast")``, e.g. ``~/.cache/pyconvfast`` on Linux).
    The file may not exist yet: it is created by the first tuning.

    Returns
    -------
    pathlib.Path
        An absolute path.

    Examples
    --------
    >>> import os, pathlib, tempfile
    >>> import pyconvfast as pcf
    >>> folder = tempfile.TemporaryDirectory()
    >>> os.environ["PYCONVFAST_CACHE_DIR"] = folder.name
    >>> pcf.tuning.cache_path() == pathlib.Path(folder.name, "tuning.json").absolute()
    True
    >>> del os.environ["PYCONVFAST_CACHE_DIR"]; folder.cleanup()
    >>> pcf.tuning.cache_path()  # doctest: +SKIP
    PosixPath('/home/me/.cache/pyconvfast/tuning.json')
    """
    path: pathlib.Path = store.get_cache().path
    return path


def report() -> list[dict[str, Any]]:
    """This machine's tuning choices, one dict per problem, sorted by key.

    Entries of other machines, pyconvfast versions or BLAS libraries in the same file are not
    listed (they are kept in the file, but never used here).

    Returns
    -------
    list of dict
        Each with ``key`` (str, the problem: kind, shapes, stride, padding, dtype, layout),
        ``algorithm`` (str, the choice), ``params`` (dict, the algorithm's tuned parameters),
        ``timings`` (dict of algorithm or candidate name to seconds per call) and ``created``
        (ISO 8601 str).

    Examples
    --------
    >>> import os, tempfile
    >>> import pyconvfast as pcf
    >>> from pyconvfast.tuning import autotune
    >>> from pyconvfast.tuning import store
    >>> folder = tempfile.TemporaryDirectory()
    >>> os.environ["PYCONVFAST_CACHE_DIR"] = folder.name
    >>> store.get_cache().store("conv2d|example", {"algorithm": "im2col",
    ...                                             "timings": {"direct": 2e-3, "im2col": 1e-3}})
    >>> [(entry["key"], entry["algorithm"], entry["timings"]) for entry in pcf.tuning.report()]
    [('conv2d|example', 'im2col', {'direct': 0.002, 'im2col': 0.001})]
    >>> del os.environ["PYCONVFAST_CACHE_DIR"]; folder.cleanup()
    """
    entries = store.get_cache().entries()
    return [{"key": key, **entries[key]} for key in sorted(entries)]


def clear() -> None:
    """Forget this machine's tuning choices, in this process and in the cache file.

    Only the entries of this machine fingerprint (CPU, pyconvfast version, BLAS) are removed:
    those of other machines sharing the file (a home folder mounted on several hosts) stay. To
    remove everything, delete the file :func:`cache_path`.

    Raises
    ------
    OSError
        If the cache file cannot be read or written, or its lock is held by another process
        (``TimeoutError``); nothing is removed then.

    Examples
    --------
    >>> import os, tempfile
    >>> import pyconvfast as pcf
    >>> from pyconvfast.tuning import autotune
    >>> from pyconvfast.tuning import store
    >>> folder = tempfile.TemporaryDirectory()
    >>> os.environ["PYCONVFAST_CACHE_DIR"] = folder.name
    >>> store.get_cache().store("conv2d|example", {"algorithm": "direct"})
    >>> len(pcf.tuning.report())
    1
    >>> pcf.tuning.clear()
    >>> pcf.tuning.report()
    []
    >>> del os.environ["PYCONVFAST_CACHE_DIR"]; folder.cleanup()
    """
    store.get_cache().clear()
    autotune.forget()  # choices this process remembers must go too


def export(path: str | os.PathLike[str]) -> None:
    """Write this machine's tuning choices to a JSON file, to keep or to copy to a twin machine.

    The file holds the entries with this machine's fingerprint, in the cache file's format; it
    is written atomically (a temporary file renamed over ``path``).

    Parameters
    ----------
    path : str or path-like
        The file to write (replaced if it exists); its folder must exist.

    Raises
    ------
    OSError
        If ``path`` cannot be written.

    Examples
    --------
    >>> import json, os, tempfile
    >>> import pyconvfast as pcf
    >>> from pyconvfast.tuning import autotune
    >>> from pyconvfast.tuning import store
    >>> folder = tempfile.TemporaryDirectory()
    >>> os.environ["PYCONVFAST_CACHE_DIR"] = folder.name
    >>> store.get_cache().store("conv2d|example", {"algorithm": "direct"})
    >>> saved = os.path.join(folder.name, "wisdom.json")
    >>> pcf.tuning.export(saved)
    >>> with open(saved) as file:
    ...     document = json.load(file)
    >>> document["schema"], [list(m["entries"]) for m in document["machines"].values()]
    (1, [['conv2d|example']])
    >>> del os.environ["PYCONVFAST_CACHE_DIR"]; folder.cleanup()
    """
    store.get_cache().export(os.fspath(path))


def load(path: str | os.PathLike[str]) -> dict[str, int]:
    """Merge the tuning choices of a file written by :func:`export` (or a whole cache file).

    Every entry is validated before anything is merged. An entry in the file replaces the
    cache's entry for the same machine and problem. Entries of other machines (fingerprints)
    are kept in the cache file but not used on this one.

    Parameters
    ----------
    path : str or path-like
        The file to read.

    Returns
    -------
    dict
        ``{"usable": int, "other": int}``: how many entries were for this machine, and how
        many for others.

    Raises
    ------
    ValueError
        If ``path`` is not a valid pyconvfast tuning file (the message says what is wrong).
    OSError
        If ``path`` cannot be read, or the cache file cannot be written.

    Examples
    --------
    >>> import os, tempfile
    >>> import pyconvfast as pcf
    >>> from pyconvfast.tuning import autotune
    >>> from pyconvfast.tuning import store
    >>> folder = tempfile.TemporaryDirectory()
    >>> os.environ["PYCONVFAST_CACHE_DIR"] = folder.name
    >>> store.get_cache().store("conv2d|example", {"algorithm": "direct"})
    >>> saved = os.path.join(folder.name, "wisdom.json")
    >>> pcf.tuning.export(saved)
    >>> os.environ["PYCONVFAST_CACHE_DIR"] = os.path.join(folder.name, "new")  # an empty cache
    >>> pcf.tuning.load(saved)
    {'usable': 1, 'other': 0}
    >>> [entry["key"] for entry in pcf.tuning.report()]
    ['conv2d|example']
    >>> with open(saved, "w") as file:
    ...     _ = file.write("[1, 2, 3]")
    >>> pcf.tuning.load(saved)
    Traceback (most recent call last):
        ...
    ValueError: cannot load ...: not a pyconvfast tuning file: its top level is a JSON list, not an object
    >>> del os.environ["PYCONVFAST_CACHE_DIR"]; folder.cleanup()
    """
    counts: dict[str, int] = store.get_cache().load(os.fspath(path))
    autotune.forget()  # so that the loaded choices, not remembered ones, serve from now on
    return counts
