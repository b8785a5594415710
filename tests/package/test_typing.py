"""The package's types as a user's type checker sees them: ``py.typed`` ships with it, and mypy
infers the public functions' results and flags misspelt string options in a user's script."""

import os
import pathlib
import site
import subprocess
import sys
import sysconfig

import pytest

import pyconvfast

USER_SCRIPT = '''\
import numpy as np
import pyconvfast as pcf

x = np.ones((1, 3, 8, 8), dtype=np.float32)
w = np.ones((4, 3, 3, 3), dtype=np.float32)
reveal_type(pcf.conv2d(x, w, padding="same"))
reveal_type(pcf.plan(x.shape, w))
reveal_type(pcf.plan(x.shape, w).algorithm)
reveal_type(pcf.conv_output_shape(x.shape, w.shape))
reveal_type(pcf.get_config()["n_threads"])
pcf.conv2d(x, w, padding_mode="mirror")
pcf.set_config(tune="fast")
'''


def test_py_typed_is_in_the_package():
    assert (pathlib.Path(pyconvfast.__file__).parent / "py.typed").is_file()


def test_mypy_sees_the_public_types_in_a_user_script(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")  # mypy's defaults, whatever the folders hold
    env = dict(os.environ)
    # mypy finds an installed package itself; the package under test may also come from a
    # source tree on PYTHONPATH (PYTHONPATH=src), which mypy does not read.
    package_root = str(pathlib.Path(pyconvfast.__file__).resolve().parents[1])
    installed = {str(pathlib.Path(p).resolve()) for p in
                 [*site.getsitepackages(), sysconfig.get_path("purelib"),
                  sysconfig.get_path("platlib")]}
    if package_root not in installed:
        env["MYPYPATH"] = package_root
    # As for an installed package: the package's own modules are read but not reported on.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "cache",
         "--follow-imports=silent", "--config-file", "mypy.ini", "user.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    revealed = [line.split("Revealed type is ", 1)[1] for line in lines if "Revealed" in line]
    assert revealed == [
        '"numpy.ndarray[tuple[Any, ...], numpy.dtype[numpy.floating[Any]]]"',
        '"pyconvfast._plan.Plan"',
        '"str"',
        '"tuple[int, ...]"',
        '"int"',
    ], result.stdout + result.stderr
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 2, result.stdout + result.stderr
    assert errors[0].startswith("user.py:11:") and '"padding_mode"' in errors[0]
    assert errors[1].startswith("user.py:12:") and '"tune"' in errors[1]
