"""The one CPU dispatch (``pyconvfast._lib.cpu``): one SIMD level for every kernel family, each
family's variant table, and the ``simd`` setting of ``pcf.set_config`` / ``PYCONVFAST_SIMD``."""

import io
import os
import subprocess
import sys

import pytest

import pyconvfast as pcf
from pyconvfast._lib.cpu import levels
from pyconvfast._lib.depthwise import kernel as depthwise_kernel
from pyconvfast._lib.direct import blocked as direct_blocked
from pyconvfast._lib.grouped import kernel as grouped_kernel
from pyconvfast._lib.pointwise import kernel as pointwise_kernel

FAMILIES = (direct_blocked, depthwise_kernel, grouped_kernel, pointwise_kernel)


@pytest.fixture(autouse=True)
def _keep_level(monkeypatch):
    """Each test leaves the level (and the simd setting) as it found them."""
    monkeypatch.delenv("PYCONVFAST_SIMD", raising=False)
    before = levels.simd_level()
    yield
    pcf._config._global.pop("simd", None)
    levels.set_simd_level(before)


def test_the_level_table():
    assert levels.SIMD_LEVELS == ("baseline", "avx2", "avx512f")
    have = levels.simd_levels()
    assert have[0] == "baseline" and have == levels.SIMD_LEVELS[:len(have)]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda module: module.__name__)
def test_each_family_has_one_variant_per_level(family):
    assert tuple(variant.level for variant in family.VARIANTS) == levels.SIMD_LEVELS
    for variant in family.VARIANTS:
        assert variant.name.startswith(variant.level + "_")
    have = len(levels.simd_levels())
    assert levels.variants_on_this_cpu(family.VARIANTS) == family.VARIANTS[:have]


@pytest.mark.parametrize("level", levels.SIMD_LEVELS)
def test_one_setter_switches_every_family(level):
    got = levels.set_simd_level(level)
    assert got == (level if level in levels.simd_levels() else levels.simd_levels()[-1])
    assert levels.simd_level() == got
    for family in FAMILIES:
        assert family.active_variant().level == got


def test_none_is_the_best_level_and_a_bad_level_is_named():
    levels.set_simd_level("baseline")
    assert levels.set_simd_level(None) == levels.simd_levels()[-1]
    with pytest.raises(ValueError, match=r"SIMD level must be one of .*'sse9'"):
        levels.set_simd_level("sse9")
    assert levels.simd_level() == levels.simd_levels()[-1]  # unchanged by the refusal


def test_set_config_and_get_config():
    pcf.set_config(simd="baseline")
    assert pcf.get_config()["simd"] == "baseline" == levels.simd_level()
    assert direct_blocked.active_variant().level == "baseline"
    pcf.set_config(simd=None)
    assert pcf.get_config()["simd"] == levels.simd_levels()[-1] == levels.simd_level()
    with pytest.raises(ValueError, match="simd must be one of"):
        pcf.set_config(simd="sse9")


def test_config_context_puts_back_the_level_it_found():
    levels.set_simd_level("baseline")
    best = levels.simd_levels()[-1]
    with pcf.config_context(simd=best):
        assert levels.simd_level() == best == pcf.get_config()["simd"]
        with pcf.config_context(simd="baseline"):
            assert levels.simd_level() == "baseline"
        assert levels.simd_level() == best
        with pcf.config_context(precision="accurate"):  # other settings leave the level alone
            assert levels.simd_level() == best
    assert levels.simd_level() == "baseline"


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("PYCONVFAST_SIMD", "baseline")
    pcf.set_config(simd=None)  # back to the variable
    assert levels.simd_level() == "baseline"
    monkeypatch.setenv("PYCONVFAST_SIMD", "sse9")
    with pytest.raises(ValueError, match="PYCONVFAST_SIMD must be one of"):
        pcf.set_config(simd=None)


def test_environment_variable_is_read_at_import():
    env = dict(os.environ, PYCONVFAST_SIMD="baseline")
    code = ("import pyconvfast as pcf\n"
            "from pyconvfast._lib.cpu import levels\n"
            "from pyconvfast._lib.grouped import kernel\n"
            "print(levels.simd_level(), kernel.active_variant().level, pcf.get_config()['simd'])")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["baseline"] * 3


def test_show_config_prints_the_level_once():
    text = io.StringIO()
    pcf.show_config(file=text)
    lines = [line for line in text.getvalue().splitlines() if line.startswith("SIMD level")]
    assert lines == [f"SIMD levels: detected {', '.join(levels.simd_levels())}; in use (every "
                     f"kernel) {levels.simd_level()}"]
