"""The docs' speed-up and roofline figures: drawn from the saved ``bench/compare.py --json`` run,
and from what ``compare.py --json`` writes now (so that the two stay in step)."""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEEDUP = ROOT / "docs" / "figures" / "speedup.py"
SAVED_RUN = ROOT / "docs" / "figures" / "compare_2026-12.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def draw(data, output_dir):
    """Run docs/figures/speedup.py as a user would, with matplotlib's Agg backend."""
    result = subprocess.run(
        [sys.executable, str(SPEEDUP), "--data", str(data), "--output-dir", str(output_dir)],
        env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("speedup.png", "roofline.png"):
        image = (output_dir / name).read_bytes()
        assert image.startswith(PNG_SIGNATURE) and len(image) > 10_000, name
    return result.stdout


def test_the_saved_run_holds_every_layer_with_its_ceilings():
    run = json.loads(SAVED_RUN.read_text())
    assert run["fma_peak_gflops"] > 0 and run["copy_bandwidth_gbs"] > 0
    assert {layer["network"] for layer in run["layers"]} >= {"resnet50", "mobilenet_v2"}
    for layer in run["layers"]:
        assert layer["flops"] > 0 and layer["bytes"] > 0
        assert set(layer["seconds"]) >= {"pyconvfast", "torch", "onnxruntime"}
        for library, gflops in layer["gflops"].items():
            assert math.isclose(gflops, layer["flops"] / layer["seconds"][library] / 1e9)


def test_the_figures_draw_from_the_saved_run(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is in the test extra")
    printed = draw(SAVED_RUN, tmp_path)
    networks = {layer["network"] for layer in json.loads(SAVED_RUN.read_text())["layers"]}
    for network in networks:
        assert f"{network}: " in printed and "geometric mean speed-up over PyTorch" in printed


def test_compare_json_is_what_the_figures_read(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("compare", ROOT / "bench" / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    # The GEMM peak (a 2048^3 sgemm, seconds) is in the text report only.
    monkeypatch.setattr(compare, "blas_peak", lambda dtype, n_threads: 1.0)
    saved = tmp_path / "run.json"
    compare.main(["--models", "depthwise_conv1d", "--threads", "1", "--repeats", "1",
                  "--json", str(saved)])
    run = json.loads(saved.read_text())
    assert run["threads"] == 1 and run["dtype"] == "float32"
    assert run["fma_peak_gflops"] > 1 and run["copy_bandwidth_gbs"] > 0.1
    assert [layer["layer"] for layer in run["layers"]] == ["dw1d_k31", "dw1d_k63"]
    for layer in run["layers"]:
        # (1, 256, 4096) input, (256, 1, k) weight, "same" padding: output as large as the input
        k = layer["w_shape"][-1]
        assert layer["flops"] == 2 * 256 * 4096 * k
        assert layer["bytes"] == 4 * (2 * 256 * 4096 + 256 * k)
        assert layer["gflops"]["pyconvfast"] == pytest.approx(
            layer["flops"] / layer["seconds"]["pyconvfast"] / 1e9)
    if importlib.util.find_spec("matplotlib") is not None:
        draw(saved, tmp_path)  # with or without the peers installed
