"""The command line, the demo, the docs' examples, and the workspace setting."""

import argparse
import ast
import doctest
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _demo
from pyconvfast.__main__ import main

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
README = DOCS.parent / "README.md"


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


BENCH = ["bench", "--x-shape", "1,2,6,6", "--w-shape", "2,2,3,3", "--repeats", "1"]


def _shell(*argv, **env):
    """``python -m pyconvfast *argv`` in a child process, with ``env`` added to its
    environment."""
    return subprocess.run([sys.executable, "-m", "pyconvfast", *argv], capture_output=True,
                          text=True, check=False, env={**os.environ, **env})


@pytest.mark.parametrize("padding", ["foo", "1,x", ""])
def test_cli_bench_bad_padding_is_a_usage_error(padding, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*BENCH, "--padding", padding])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "usage" in err
    assert f"argument --padding: expected an int, comma-separated ints, 'same' or 'valid', " \
           f"got {padding!r}" in err.splitlines()[-1]


def test_cli_bench_bad_padding_from_the_shell_has_no_traceback():
    done = _shell(*BENCH, "--padding", "foo")
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("python -m pyconvfast bench: error: argument")


@pytest.mark.parametrize("padding", ["same", "valid", "1", "1,0"])
def test_cli_bench_good_padding(padding, capsys):
    assert main([*BENCH, "--padding", padding]) == 0
    assert "auto (" in capsys.readouterr().out


def test_cli_bench_plot_without_matplotlib_fails_before_the_run(monkeypatch, capsys, tmp_path):
    from pyconvfast import __main__ as cli

    def no_run(*args, **kwargs):
        raise AssertionError("the benchmark ran although its plot cannot be drawn")

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.setattr(cli, "plan", no_run)
    monkeypatch.setattr(cli, "list_algorithms", no_run)
    assert main([*BENCH, "--plot", str(tmp_path / "bench.png")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: --plot needs matplotlib (pip install matplotlib); "
                            "nothing was run\n")
    assert not (tmp_path / "bench.png").exists()


def test_cli_cache_clear_that_cannot_write_is_one_line_and_status_1(monkeypatch, capsys,
                                                                   tmp_path):
    # What a read-only cache does (chmod cannot show it: the tests may run as root, whom a
    # mode 0o500 folder does not stop): the atomic write of the cleared file fails.
    from pyconvfast.tuning import store as _cache

    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path / "cache"))
    _cache.get_cache().store("conv2d|k", {"algorithm": "direct"})

    def read_only(path, document):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(_cache, "write_atomically", read_only)
    assert main(["cache", "clear"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("error: cannot clear the tuning cache ")
    assert line.endswith("tuning.json: [Errno 13] Permission denied: " + repr(
        str(pcf.tuning.cache_path())))
    assert _cache.get_cache().lookup("conv2d|k") is not None  # nothing was cleared


def test_cli_cache_clear_of_a_real_unwritable_cache_from_the_shell(tmp_path):
    # A folder in the cache file's place: no user, root included, can replace it by a file.
    (tmp_path / "cache" / "tuning.json").mkdir(parents=True)
    done = _shell("cache", "clear", PYCONVFAST_CACHE_DIR=str(tmp_path / "cache"))
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: cannot clear the tuning cache ") and "is a directory" in line


def test_cli_cache_clear_of_a_read_only_folder(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "tuning.json").write_text('{"schema": 1, "machines": {}}')
    folder.chmod(0o500)
    try:
        try:
            (folder / "probe").touch()
            pytest.skip("this user (root?) can write in a folder with mode 500")
        except PermissionError:
            pass
        done = _shell("cache", "clear", PYCONVFAST_CACHE_DIR=str(folder))
    finally:
        folder.chmod(0o700)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: cannot clear the tuning cache ")


def test_cli_cache_export_that_cannot_write_is_one_line_and_status_1(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert main(["cache", "export", str(tmp_path / "a-file" / "wisdom.json")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot export to {tmp_path / 'a-file' / 'wisdom.json'}: ")


def test_python_dash_m_runs():
    done = subprocess.run([sys.executable, "-m", "pyconvfast", "--help"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and "demo" in done.stdout


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.rst")), ids=lambda p: p.name)
def test_docs_examples_run(page):
    if page.name == "dask.rst":
        pytest.importorskip("dask.array")  # an optional extra (pyconvfast.dask)
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def _pcf_calls(source, name):
    """The keyword arguments of each ``pcf.<name>(...)`` call in ``source``, literal values."""
    return [{keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords}
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == name and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "pcf"]


def test_readme_plan_runs_the_convolution_of_the_call_above_it(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    pipeline = next(block for block in blocks if "pcf.conv2d(images" in block)
    planned = next(block for block in blocks if "pcf.plan(images.shape" in block)
    (conv_kwargs,) = _pcf_calls(pipeline, "conv2d")
    (plan_kwargs,) = _pcf_calls(planned, "plan")
    assert plan_kwargs == conv_kwargs
    namespace = {}
    exec(pipeline, namespace)
    namespace["batches"] = [namespace["images"]]
    exec(planned, namespace)
    capsys.readouterr()
    expected = pcf.conv2d(namespace["images"], namespace["weight"], **conv_kwargs)
    np.testing.assert_allclose(namespace["features"], expected, rtol=1e-5, atol=1e-5)


def test_docs_pages_exist():
    assert len(list(DOCS.rglob("*.rst"))) >= 5


@pytest.mark.parametrize("text", ["abc", "0", "-5", "nan"])
def test_bad_workspace_setting_is_a_clear_error(monkeypatch, text):
    monkeypatch.setenv("PYCONVFAST_WORKSPACE_MB", text)
    x = np.ones((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match=f"PYCONVFAST_WORKSPACE_MB must be a positive number of MiB, got '{text}'"):
        pcf.conv2d(x, np.ones((2, 2, 3, 3), np.float32), algorithm="im2col")


# --- a CLI that behaves (issue 17, item 4) --------------------------------------------------------

def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pyconvfast", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_version():
    done = _cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"pyconvfast {pcf.__version__}"


def test_every_option_has_help():
    from pyconvfast.__main__ import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    scripts = entry_points(group="console_scripts", name="pyconvfast")
    assert [s.value for s in scripts] == ["pyconvfast.__main__:_main_for_shell"]


def test_cache_show_and_bench_print_json(tmp_path):
    env = {"PYCONVFAST_CACHE_DIR": str(tmp_path), "PYCONVFAST_TUNE": "measure"}
    done = _cli("bench", "--x-shape", "1,4,12,12", "--w-shape", "4,4,3,3", "--padding", "1",
                "--repeats", "2", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    algorithms = [row["algorithm"] for row in report["results"]]
    assert "direct" in algorithms and any(a.startswith("auto (") for a in algorithms)
    assert all(row["seconds"] > 0 and row["gflops"] > 0 for row in report["results"])
    done = _cli("cache", "show", "--json", env=env)
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)
    assert entries and all({"key", "algorithm", "timings"} <= set(e) for e in entries)


def test_tune_progress_hides_itself_when_stderr_is_not_a_terminal(tmp_path):
    shapes = tmp_path / "layers.json"
    shapes.write_text(json.dumps([{"x_shape": [1, 4, 10, 10], "w_shape": [4, 4, 3, 3],
                                   "padding": 1, "name": "a"},
                                  {"x_shape": [1, 4, 10, 10], "w_shape": [8, 4, 1, 1],
                                   "name": "b"}]))
    done = _cli("tune", str(shapes), env={"PYCONVFAST_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "tuned 2 layers" in done.stdout and "\r" not in done.stdout + done.stderr
    assert "tuning" not in done.stderr   # tqdm stayed silent on a pipe


def test_the_tuners_decisions_go_to_the_pyconvfast_logger(tmp_path, monkeypatch, caplog):
    from pyconvfast.tuning import autotune as _autotune

    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PYCONVFAST_TUNE", "measure")
    _autotune.forget()
    x = np.ones((1, 4, 12, 12), np.float32)
    with caplog.at_level("INFO", logger="pyconvfast"):
        pcf.conv2d(x, np.ones((4, 4, 3, 3), np.float32), padding=1)
    assert "auto chose" in caplog.text and "conv2d|n1|c4|k4" in caplog.text
    _autotune.forget()
