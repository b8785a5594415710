"""The command line, the demo, the docs' examples, and the workspace setting."""

import doctest
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _demo
from pyconvfast.__main__ import main

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def test_demo_checks_every_layer_and_prints_the_table():
    lines = []
    assert _demo.run_demo(image_size=32, repeats=1, print_fn=lines.append) is True
    table = "\n".join(lines)
    for column in ("layer", "algorithm", "time ms", "GFLOP/s"):
        assert column in table
    assert table.count(" ok") == len(_demo.RESNET18_LAYERS)
    assert "all layers match the float64 reference" in table


def test_cli_demo_exit_status(capsys):
    assert main(["demo", "--image-size", "32", "--threads", "1"]) == 0
    assert "layer4.conv" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["demo", "--threads", "0"],
                                  ["demo", "--image-size", "big"]])
def test_cli_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_python_dash_m_runs():
    done = subprocess.run([sys.executable, "-m", "pyconvfast", "--help"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and "demo" in done.stdout


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.rst")), ids=lambda p: p.name)
def test_docs_examples_run(page):
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_docs_pages_exist():
    assert len(list(DOCS.rglob("*.rst"))) >= 5


@pytest.mark.parametrize("text", ["abc", "0", "-5", "nan"])
def test_bad_workspace_setting_is_a_clear_error(monkeypatch, text):
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", text)
    x = np.ones((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match=f"PYCONVFAST_WORKSPACE_MB must be a positive number of MiB, got '{text}'"):
        pcf.conv2d(x, np.ones((2, 2, 3, 3), np.float32), algorithm="im2col")
