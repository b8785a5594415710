"""What a tuning cache file and its entries may hold, and how a bad one is reported.

Entries are checked field by field (:func:`validate_entry`): the file is data from disk, written
by any version or edited by hand, and nothing in it is trusted, executed or unpickled. The
problems found are reported as ``RuntimeWarning`` warnings, once per process per kind
(:func:`warn_once`), on the automatic path; explicit requests raise.

Why by hand and not with a schema library such as msgspec (weighed for issue 16, msgspec 0.23):
a ``msgspec.Struct`` would replace the type and range checks of the fixed fields (about 40
lines), and decoding plus converting a 10,000-entry cache was about 3x faster than ``json``
and :func:`validate_entry`. But an entry may carry extra fields (str, number, bool or null),
which a Struct drops; it accepts an infinite time and any string as ``created``, so both checks
stay; its errors ("Expected `str`, got `int` - at `$.algorithm`") are not the messages users and
tests see; one bad entry must cost only itself, so entries are converted one by one anyway; and
it is a compiled dependency imported with the package (about 20 ms). Few lines saved, the file
format's rules split over two places, a cost once per process only for a very large cache: the
checks stay here, in plain Python, on the ``json`` module.
"""

import datetime
import json
import math
import os
import sys
import warnings

SCHEMA = 1

_WARNED: set[str] = set()  # the kinds of problem this process has already warned about


def warn_once(kind, message):
    """A RuntimeWarning, once per process for each ``kind`` of problem.

    Attributed to the first caller outside pyconvfast (the user's line that ran a convolution),
    which is where a user can act on it.
    """
    if kind in _WARNED:
        return
    _WARNED.add(kind)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # pyconvfast/
    frame, level = sys._getframe(0), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            package):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"pyconvfast tuning cache: {message}; carrying on with the cache in memory",
                  RuntimeWarning, stacklevel=level)


# --------------------------------------------------------------------------------------------
# Validation


class InvalidCacheFile(ValueError):
    """A cache (or exported) file that is not what this module writes."""


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _checked_params(entry, key):
    params = entry.get(key, {})
    if not isinstance(params, dict):
        raise ValueError(f"an entry's {key} must be an object, got {type(params).__name__}")
    for name, value in params.items():
        if not isinstance(name, str) or not (
                isinstance(value, (str, bool)) or _is_number(value)):
            raise ValueError(f"{key} must map strings to int, float, str or bool, got "
                             f"{name!r}: {value!r}")
    return dict(params)


def _checked_timings(entry, key):
    timings = entry.get(key, {})
    if not isinstance(timings, dict):
        raise ValueError(f"an entry's {key} must be an object, got {type(timings).__name__}")
    for name, value in timings.items():
        if not isinstance(name, str) or not _is_number(value) or value < 0:
            raise ValueError(f"{key} must map strings to finite seconds >= 0, got "
                             f"{name!r}: {value!r}")
    return {name: float(value) for name, value in timings.items()}


def validate_entry(entry):
    """The entry in canonical form, or a ValueError saying what is wrong with it.

    Parameters
    ----------
    entry : dict
        ``algorithm`` (non-empty str), ``params`` (dict of str to int, float, str or bool;
        optional, ``{}``), ``timings`` (dict of str to a finite float >= 0; optional, ``{}``),
        ``created`` (ISO 8601 str; optional, now); optionally ``plan_algorithm`` (str or None)
        with ``plan_params`` (as ``params``), ``prepare_timings`` and ``cold_timings`` (as
        ``timings``); and any
        other keys whose values are str, int, float, bool or None.

    Returns
    -------
    dict
        A new dict; nested dicts are new too.
    """
    if not isinstance(entry, dict):
        raise ValueError(f"an entry must be a JSON object, got {type(entry).__name__}")
    algorithm = entry.get("algorithm")
    if not isinstance(algorithm, str) or not algorithm:
        raise ValueError(f"an entry's algorithm must be a non-empty string, got {algorithm!r}")
    plan_algorithm = entry.get("plan_algorithm")
    if plan_algorithm is not None and (not isinstance(plan_algorithm, str) or not plan_algorithm):
        raise ValueError(
            f"an entry's plan_algorithm must be a non-empty string or null, got "
            f"{plan_algorithm!r}")
    created = entry.get("created")
    if created is None:
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    elif not isinstance(created, str):
        raise ValueError(f"an entry's created must be an ISO 8601 string, got {created!r}")
    else:
        try:
            datetime.datetime.fromisoformat(created)
        except ValueError:
            raise ValueError(f"an entry's created is not an ISO 8601 date: {created!r}") from None
    clean = {"algorithm": algorithm, "params": _checked_params(entry, "params"),
             "timings": _checked_timings(entry, "timings"), "created": created}
    if plan_algorithm is not None:
        clean["plan_algorithm"] = plan_algorithm
        clean["plan_params"] = _checked_params(entry, "plan_params")
    for key in ("prepare_timings", "cold_timings"):
        if key in entry:
            clean[key] = _checked_timings(entry, key)
    for name, value in entry.items():
        if name in clean or name == "plan_params":  # plan_params only with a plan_algorithm
            continue
        if not isinstance(name, str) or not (
                value is None or isinstance(value, (str, bool)) or _is_number(value)):
            raise ValueError(f"an entry's extra field must be a string, number, bool or null, "
                             f"got {name!r}: {value!r}")
        clean[name] = value
    return clean


def check_key(key):
    if not isinstance(key, str) or not key:
        raise ValueError(f"a problem key must be a non-empty string, got {key!r}")


def reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def parse_document(data):
    """A cache document from the file's bytes; InvalidCacheFile when it is not one.

    Only the top level is checked here: the ``machines`` sections are checked where they are
    used, so that one bad section (of another machine, say) does not cost the others.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidCacheFile(f"it is not UTF-8 text ({error.reason} at byte {error.start})"
                               ) from None
    try:
        document = json.loads(text, parse_constant=reject_constant)
    except (ValueError, RecursionError) as error:
        raise InvalidCacheFile(f"it is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise InvalidCacheFile(f"its top level is a JSON {type(document).__name__}, "
                               f"not an object")
    schema = document.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise InvalidCacheFile(f"its schema is {schema!r}, not a positive integer")
    if schema == SCHEMA and not isinstance(document.get("machines"), dict):
        raise InvalidCacheFile("its 'machines' is not an object")
    return document


class NewerSchema(Exception):
    """The file was written by a newer pyconvfast: leave it alone."""


class UnreadableFile(OSError):
    """The cache file exists but cannot be read, so a write would lose its content."""


def machine_entries(section, strict):
    """The valid entries of one machine's section, as a dict key -> canonical entry.

    With ``strict``, the first invalid entry is an InvalidCacheFile; otherwise invalid entries
    are dropped with a (once per process) warning.
    """
    if not isinstance(section, dict) or not isinstance(section.get("entries"), dict):
        message = "a machine's section is not an object with an 'entries' object"
        if strict:
            raise InvalidCacheFile(message)
        warn_once("entry", message + "; its entries are ignored")
        return {}
    entries = {}
    for key, entry in section["entries"].items():
        try:
            check_key(key)
            entries[key] = validate_entry(entry)
        except ValueError as error:
            if strict:
                raise InvalidCacheFile(f"entry {key!r}: {error}") from None
            warn_once("entry", f"ignoring an invalid entry {key!r} ({error})")
    return entries
