"""Build the Cython kernels, with OpenMP where the compiler has it.

The OpenMP probe compiles and links a tiny program with the real compiler of this build. If that
fails (or ``PYCONVFAST_DISABLE_OPENMP=1`` is set), the extensions are built serial: ``prange``
loops then compile to plain loops and ``n_threads`` has no effect. No ``-march=native``: a wheel
built here must run on any x86-64 CPU.

On macOS the OpenMP runtime is LLVM's libomp, found through ``PYCONVFAST_OPENMP_PREFIX`` or
Homebrew (``brew install libomp``).

``PYCONVFAST_SANITIZE=address,undefined`` (any ``-fsanitize=`` list) builds instrumented
extensions for testing: ``-fsanitize=<list> -fno-omit-frame-pointer -fno-sanitize-recover=all
-O1 -g`` on top of the normal flags, for GCC and Clang only. Never ship such a build; running it
needs the sanitizer runtime preloaded (docs/building.rst).
"""

import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

LIB = Path("src") / "pyconvfast" / "_lib"

OPENMP_TEST = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
}
"""


def _sanitizer_flags(compiler_type):
    """Compile and link flags of an opt-in sanitizer build (``PYCONVFAST_SANITIZE``), or []."""
    sanitizers = os.environ.get("PYCONVFAST_SANITIZE", "").strip()
    if not sanitizers:
        return []
    if compiler_type == "msvc":
        raise RuntimeError("PYCONVFAST_SANITIZE needs GCC or Clang")
    if not re.fullmatch(r"[a-z]+(,[a-z]+)*", sanitizers):
        raise RuntimeError(
            f"PYCONVFAST_SANITIZE must be a comma-separated -fsanitize= list such as "
            f"'address,undefined', got {sanitizers!r}"
        )
    # -O1 -g after -O3 -g0 wins: readable stacks at a bearable speed. No recovery: the first
    # report ends the process, so a test run cannot pass with a report in its log.
    return [f"-fsanitize={sanitizers}", "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all", "-O1", "-g"]


def _macos_openmp_prefix():
    """Where LLVM's OpenMP runtime (libomp) lives on macOS: ``PYCONVFAST_OPENMP_PREFIX``, else
    Homebrew's ``libomp`` (keg-only: not on the compiler's default paths), else None.

    Apple's clang understands ``-Xpreprocessor -fopenmp`` but ships neither ``omp.h`` nor
    libomp; scikit-learn builds its macOS wheels the same way (Homebrew's libomp, then
    ``delocate`` copies the library into the wheel).
    """
    prefix = os.environ.get("PYCONVFAST_OPENMP_PREFIX")
    if prefix:
        return prefix
    try:
        found = subprocess.run(["brew", "--prefix", "libomp"], capture_output=True, text=True,
                               timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return found or None


def _openmp_flags(compiler_type):
    """(compile flags, link flags) that switch OpenMP on for this compiler family."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        prefix = _macos_openmp_prefix()
        paths = ([f"-I{prefix}/include"], [f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib"]) \
            if prefix else ([], [])
        return ["-Xpreprocessor", "-fopenmp", *paths[0]], [*paths[1], "-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


class BuildExtWithOpenMPProbe(build_ext):
    def _compiler_has_openmp(self, compile_flags, link_flags):
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "omp_probe.c"
            source.write_text(OPENMP_TEST)
            try:
                objects = self.compiler.compile(
                    [str(source)], output_dir=tmp, extra_postargs=compile_flags
                )
                self.compiler.link_executable(
                    objects, "omp_probe", output_dir=tmp, extra_postargs=link_flags
                )
            except Exception:  # any compile or link error means: no usable OpenMP
                return False
        return True

    def build_extensions(self):
        compile_flags, link_flags = _openmp_flags(self.compiler.compiler_type)
        if os.environ.get("PYCONVFAST_DISABLE_OPENMP") == "1":
            use_openmp = False
            warnings.warn("PYCONVFAST_DISABLE_OPENMP=1: building pyconvfast serial (no OpenMP).")
        else:
            use_openmp = self._compiler_has_openmp(compile_flags, link_flags)
            if not use_openmp:
                warnings.warn(
                    "The compiler has no working OpenMP: building pyconvfast serial; "
                    "n_threads will have no effect."
                )
        sanitize = _sanitizer_flags(self.compiler.compiler_type)
        # Objects left in build/ by a build with another OpenMP or sanitizer setting must not be
        # reused.
        stamp = Path(self.build_temp) / "pyconvfast-openmp"
        setting = str(use_openmp) + (" " + " ".join(sanitize) if sanitize else "")
        if not stamp.exists() or stamp.read_text() != setting:
            self.force = True
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(setting)
        msvc = self.compiler.compiler_type == "msvc"
        # -g0 after the interpreter's own CFLAGS (which usually hold -g) wins: no debug info in
        # the release extensions (most of the wheel otherwise). PYCONVFAST_DEBUG_INFO=1 keeps it.
        debug_info = [] if msvc or os.environ.get("PYCONVFAST_DEBUG_INFO") == "1" else ["-g0"]
        optimize = (["/O2"] if msvc else ["-O3"]) + debug_info
        for ext in self.extensions:
            # Kernels that promise the same bits on every CPU must not let the compiler fuse
            # a * b + c into an FMA in their run-time-dispatched AVX2/AVX-512 loops.
            exact = [] if msvc or ext.name not in NO_FP_CONTRACT else ["-ffp-contract=off"]
            ext.extra_compile_args = (optimize + exact + (compile_flags if use_openmp else [])
                                      + sanitize)
            ext.extra_link_args = (link_flags if use_openmp else []) + sanitize
        super().build_extensions()


# The kernels live in src/pyconvfast/_lib/<folder>/<module>.pyx, one folder per kernel family
# plus cpu/ (the one SIMD dispatch) and common/ (what every family shares); every .pyx there is
# the extension pyconvfast._lib.<folder>.<module>. Headers are included by their path from _lib/
# ("cpu/dispatch.h", "depthwise/simd.h"), so _lib/ is the one include directory.
SHARED_HEADERS = ("cpu", "common")
# Folders whose headers an extension of another family includes (through a .pxd it cimports).
INCLUDES_FROM = {"separable": ("depthwise",)}


def _headers(folder):
    return sorted(str(path) for path in (LIB / folder).glob("*.h"))


def _extension(pyx):
    folder = pyx.parent.name
    return Extension(
        f"pyconvfast._lib.{folder}.{pyx.stem}",
        [str(pyx)],
        include_dirs=[str(LIB), numpy.get_include()],  # memory.pyx cimports numpy
        # C headers the extension includes: a change to one must rebuild it.
        depends=[header
                 for name in (folder, *INCLUDES_FROM.get(folder, ()), *SHARED_HEADERS)
                 for header in _headers(name)],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


EXTENSIONS = [_extension(pyx) for pyx in sorted(LIB.glob("*/*.pyx"))]
# Kernels that promise the same bits at every SIMD level: the depthwise loops (depthwise/simd.h),
# in the depthwise kernel and in the fused separable one that shares them. (The depthwise "chw"
# loops, depthwise/chw.h, fuse through FMA intrinsics, which this flag does not affect.)
NO_FP_CONTRACT = {"pyconvfast._lib.depthwise.kernel", "pyconvfast._lib.separable.kernel"}

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExtWithOpenMPProbe},
)
