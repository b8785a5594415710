"""The machine fingerprint the tuning cache files its choices under.

A choice holds for the machine it was measured on: the CPU model and its vector extensions, the
core count, the BLAS SciPy calls and the versions of pyconvfast and Python. Each is part of the
fingerprint, and a hash of it names the machine's section of the cache file
(:mod:`pyconvfast.tuning.storage`).

Why ``/proc/cpuinfo`` and not archspec (weighed for issue 16, archspec 0.2.7): the fingerprint
needs to tell machines apart, not to name them, and what tells them apart is the vendor, the
model string with its family/model/stepping numbers, and the vector extensions the kernels use,
all of which ``/proc/cpuinfo`` lists. On the AMD EPYC VM where it was tried (family 26, with
AVX-512), ``archspec.cpu.host()`` said ``x86_64_v4`` (generic), not the Zen generation, and saw
24 features where ``/proc/cpuinfo`` lists every AVX-512 subset; using its names would also
change every fingerprint id, orphaning every existing cache. It would add a dependency (about
15 ms to import) for a label: the parsing stays here, with :mod:`platform` where there is no
``/proc``.
"""

import hashlib
import json
import platform
import re

from pyconvfast._version import __version__

# The ISA extensions that decide which kernels are fast; the rest of /proc/cpuinfo's flags
# (virtualization, security mitigations ...) would only split the cache between identical CPUs.
_ISA_FLAG = re.compile(r"^(sse\w*|ssse3|avx\w*|fma\w*|amx\w*|neon|asimd\w*|sve\w*)$")
_BLAS_KEYS = ("internal_api", "version", "architecture", "threading_layer")

# --------------------------------------------------------------------------------------------
# Machine fingerprint


def _cpu_from_proc(text):
    """Vendor, model and ISA flags of the first processor listed in ``/proc/cpuinfo``."""
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if "flags" in fields or "Features" in fields:
                break  # the first processor's block is enough
            continue
        name, sep, value = line.partition(":")
        if sep:
            fields.setdefault(name.strip(), value.strip())
    vendor = fields.get("vendor_id") or fields.get("CPU implementer") or ""
    model = (fields.get("model name") or fields.get("Model") or fields.get("cpu")
             or fields.get("uarch") or "")
    # Family / model numbers tell CPU generations apart where "model name" is a generic string
    # (virtual machines often say just "Intel(R) Xeon(R) Processor").
    details = [fields[name] for name in ("cpu family", "model", "stepping", "CPU architecture",
                                         "CPU variant", "CPU part", "CPU revision")
               if name in fields]
    if details:
        model = f"{model} ({', '.join(details)})" if model else ", ".join(details)
    flags = (fields.get("flags") or fields.get("Features") or fields.get("isa") or "").split()
    return vendor, model, sorted({flag for flag in flags if _ISA_FLAG.match(flag)})


def _cpu():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            vendor, model, isa = _cpu_from_proc(file.read())
        if vendor or model or isa:
            return vendor, model, isa
    except OSError:
        pass
    # Not Linux (or no /proc): the platform module knows less, and nothing of ISA extensions.
    return platform.processor() or "", platform.machine() or "", []


def _blas():
    """The BLAS SciPy calls (the libraries ``_threads.blas_threads`` controls), as threadpoolctl
    describes it, without the thread count."""
    try:
        from pyconvfast._core.threads import blas_threads

        libraries = blas_threads.describe()
    except Exception:  # noqa: BLE001  (an unusual BLAS must not stop convolutions)
        return [{"internal_api": "unknown"}]
    described = [{key: str(lib.get(key)) for key in _BLAS_KEYS} for lib in libraries]
    return sorted(described, key=lambda lib: json.dumps(lib, sort_keys=True)) or [
        {"internal_api": "none"}]


_FINGERPRINT = None


def machine_fingerprint():
    """What makes a tuning result valid: CPU, ISA extensions, library version and BLAS.

    Computed once per process (it asks threadpoolctl about SciPy's BLAS).

    Returns
    -------
    dict
        ``{"cpu_vendor": str, "cpu_model": str, "isa": [str, ...], "machine": str,
        "system": str, "pyconvfast": str, "blas": [{"internal_api", "version", "architecture",
        "threading_layer"}, ...]}``; JSON-safe (lists, not tuples), a fresh copy each call.
    """
    global _FINGERPRINT
    if _FINGERPRINT is None:
        vendor, model, isa = _cpu()
        _FINGERPRINT = {
            "cpu_vendor": vendor,
            "cpu_model": model,
            "isa": isa,
            "machine": platform.machine(),
            "system": platform.system(),
            "pyconvfast": __version__,
            "blas": _blas(),
        }
    return json.loads(json.dumps(_FINGERPRINT))


def fingerprint_id(fingerprint):
    """A short stable name for a fingerprint: 16 hex digits of the SHA-256 of its canonical JSON.

    Parameters
    ----------
    fingerprint : dict
        As returned by :func:`machine_fingerprint` (or read back from a cache file).

    Returns
    -------
    str
    """
    canonical = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]
