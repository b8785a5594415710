"""algorithm="auto": the tuner's modes, its use of the cache, and plans."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

import pyconvfast as pcf
from pyconvfast import _api
from pyconvfast._algorithms import registry
from pyconvfast.tuning import autotune as _autotune
from pyconvfast.tuning import store as _cache
from pyconvfast.tuning import timing as _timing
from tests.helpers.reference import assert_conv_matches


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder, and a tuner that remembers nothing from earlier tests."""
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PYCONVFAST_TUNE", "measure")
    _autotune.forget()
    yield tmp_path
    _autotune.forget()


def _problem_arrays(rng, c_in=8, c_out=8, size=12):
    x = rng.standard_normal((2, c_in, size, size)).astype(np.float32)
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
    return x, w


def test_measure_times_every_usable_algorithm_and_stores_the_winner(fresh_cache, rng):
    x, w = _problem_arrays(rng)
    got = pcf.conv2d(x, w, padding=1)
    assert_conv_matches(got, x, w, padding=1)
    entries = pcf.tuning.report()
    assert len(entries) == 1
    entry = entries[0]
    assert set(entry["timings"]) == set(pcf.list_algorithms(x, w, padding=1))
    assert set(entry["prepare_timings"]) == set(entry["timings"])
    # The finalists' times, with their data in cache and flushed, decide together.
    warm, cold, prepare = entry["timings"], entry["cold_timings"], entry["prepare_timings"]
    assert 2 <= len(cold) <= 3 and set(cold) <= set(warm)
    problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=1)
    weight_bytes = {name: _timing.prepared_bytes(
        registry.get(name).prepare(problem, _api.weight_5d(w, problem))) for name in cold}
    decisive = _timing.decisive_times(warm, cold, weight_bytes)
    assert entry["plan_algorithm"] == min(decisive, key=decisive.get)
    assert entry["algorithm"] == min(decisive, key=lambda name: decisive[name] + prepare[name])
    assert all(seconds > 0 for seconds in entry["timings"].values())


def _slowed(name, base, run_seconds, prepare_seconds, ran=None):
    """A copy of algorithm ``base`` whose runs and preparations take at least the given times;
    each run appends ``name`` to the list ``ran``."""
    def prepare(problem, weight):
        time.sleep(prepare_seconds)
        return base.prepare(problem, weight)

    def run(*args):
        time.sleep(run_seconds)
        base.run(*args)
        if ran is not None:
            ran.append(name)

    return registry.Algorithm(name=name, summary="test double", supports=base.supports,
                               run=run, prepare=prepare)


def test_a_call_counts_the_weight_preparation_and_a_plan_does_not(fresh_cache, rng,
                                                                    monkeypatch):
    """A plain call on a new weight prepares it, a plan once: a fast run behind a slow
    preparation is the plan's choice, not the call's (FCN-32s' transposed layer, sub-pixel).
    A plain call that sees the same weight contents again keeps them prepared, and runs the
    plan's choice from then on (pyconvfast._core.prepared)."""
    # Different real kernels behind the two, so that a plan preparing the weight for one and
    # running the other fails.
    ran = []
    doubles = {
        "test_fast_run": _slowed("test_fast_run", registry.get("direct"), 0.002, 0.05, ran),
        "test_cheap_prepare": _slowed("test_cheap_prepare", registry.get("im2col"), 0.01, 0.0,
                                      ran),
    }
    for name, algorithm in doubles.items():
        monkeypatch.setitem(registry._ALGORITHMS, name, algorithm)
    monkeypatch.setattr(_autotune, "_candidates",
                        lambda problem, exhaustive: ((name, {}) for name in doubles))
    x, w = _problem_arrays(rng)
    assert_conv_matches(pcf.conv2d(x, w, padding=1), x, w, padding=1)
    entry = pcf.tuning.report()[0]
    assert (entry["algorithm"], entry["plan_algorithm"]) == ("test_cheap_prepare",
                                                             "test_fast_run")
    assert entry["prepare_timings"]["test_fast_run"] >= 0.05
    _autotune.forget()  # the plan reads both choices back from the file
    plan = pcf.plan(x.shape, w, padding=1)
    assert plan.algorithm == "test_fast_run"
    assert "(cache)" in plan.explain()
    assert_conv_matches(plan(x), x, w, padding=1)
    assert ran[-1] == "test_fast_run"
    assert_conv_matches(pcf.conv2d(x, w, padding=1), x, w, padding=1)
    assert ran[-1] == "test_fast_run"  # the contents were seen: kept, the plan's choice
    w_new = w + 1  # other contents: the call's choice again
    assert_conv_matches(pcf.conv2d(x, w_new, padding=1), x, w_new, padding=1)
    assert ran[-1] == "test_cheap_prepare"
    with pcf.config_context(prepared_mb=0):  # nothing kept: always the call's choice
        assert_conv_matches(pcf.conv2d(x, w, padding=1), x, w, padding=1)
        assert ran[-1] == "test_cheap_prepare"


def test_the_finalists_are_timed_again_in_interleaved_rounds(fresh_cache, rng, monkeypatch):
    """One slow first measurement (a burst of load) must not decide between close contenders."""
    im2col = registry.get("im2col")
    runs = []

    def unlucky_run(*args):
        runs.append(1)
        time.sleep(0.02 if len(runs) <= 1 + _timing.REPEATS else 0.001)
        im2col.run(*args)

    doubles = {"test_unlucky": registry.Algorithm(name="test_unlucky", summary="test double",
                                                   supports=im2col.supports, run=unlucky_run,
                                                   prepare=im2col.prepare),
               "test_steady": _slowed("test_steady", im2col, 0.004, 0.0)}
    for name, algorithm in doubles.items():
        monkeypatch.setitem(registry._ALGORITHMS, name, algorithm)
    monkeypatch.setattr(_autotune, "_candidates",
                        lambda problem, exhaustive: ((name, {}) for name in doubles))
    x, w = _problem_arrays(rng)
    pcf.conv2d(x, w, padding=1)
    entry = pcf.tuning.report()[0]
    assert entry["algorithm"] == entry["plan_algorithm"] == "test_unlucky", entry
    assert len(runs) > 1 + _timing.REPEATS


def test_the_flushed_time_weighs_more_the_larger_the_prepared_weight(monkeypatch):
    """ResNet-50 layer4's 3x3: Winograd F(2x2) is faster back to back, ``direct`` once other
    work has evicted the 16.8 MB transformed weight; for a small weight both count."""
    monkeypatch.setattr(_timing, "_last_level_cache_bytes", lambda: 32 << 20)
    warm = {"winograd": 1.20, "direct": 1.57}
    cold = {"winograd": 1.88, "direct": 1.70}
    large = {"winograd": 16_800_000, "direct": 9_400_000}  # over a quarter of the cache
    assert _timing.decisive_times(warm, cold, large) == pytest.approx(cold)
    small = dict.fromkeys(warm, 0)  # the geometric mean
    assert _timing.decisive_times(warm, cold, small) == pytest.approx(
        {name: (warm[name] * cold[name]) ** 0.5 for name in warm})
    eighth = dict.fromkeys(warm, 4 << 20)  # half of a quarter: the flushed time weighs 3/4
    assert _timing.decisive_times(warm, cold, eighth) == pytest.approx(
        {name: warm[name] ** 0.25 * cold[name] ** 0.75 for name in warm})
    assert _timing.decisive_times(warm, {}, large) == warm  # nothing flushed: warm decides


def test_prepared_bytes_counts_the_largest_array_of_a_prepared_weight(rng):
    packed, weight = np.empty(100, np.float32), np.empty(50, np.float32)
    assert _timing.prepared_bytes((packed, weight)) == 400
    assert _timing.prepared_bytes(weight) == 200
    w = rng.standard_normal((4, 3, 5, 5))
    problem = _api.make_problem((1, 3, 16, 16), w.shape, n_spatial=2, dtype=np.float64)
    spectra = registry.get("fft").prepare(problem, _api.weight_5d(w, problem))
    assert _timing.prepared_bytes(spectra) == spectra.nbytes > w.nbytes


def test_exhaustive_also_times_kernel_parameters(fresh_cache, rng, monkeypatch):
    monkeypatch.setenv("PYCONVFAST_TUNE", "exhaustive")
    x, w = _problem_arrays(rng, size=20)
    got = pcf.conv2d(x, w, padding=1)
    assert_conv_matches(got, x, w, padding=1)
    labels = set(pcf.tuning.report()[0]["timings"])
    assert any(label.startswith("im2col[max_chunk=") for label in labels), labels


@pytest.mark.parametrize("mode", ["off", "estimate"])
def test_off_and_estimate_use_the_heuristic_and_write_nothing(fresh_cache, rng, monkeypatch,
                                                               mode):
    monkeypatch.setenv("PYCONVFAST_TUNE", mode)
    x, w = _problem_arrays(rng)
    got = pcf.conv2d(x, w, padding=1)
    assert_conv_matches(got, x, w, padding=1)
    plan = pcf.plan(x.shape, w, padding=1)
    assert plan.explain().count("(heuristic)") == 1
    assert list(fresh_cache.iterdir()) == []


def test_the_choices_a_process_remembers_are_bounded(fresh_cache, rng, monkeypatch):
    """Past ``CHOICES_MAX`` problems the oldest choice is forgotten (issue 18, item 7: memory
    grew with every distinct problem); the tuning cache still has it."""
    monkeypatch.setattr(_autotune, "CHOICES_MAX", 3)
    for size in range(5, 11):
        x, w = _problem_arrays(rng, c_in=2, c_out=2, size=size)
        pcf.conv2d(x, w, padding=1)
    remembered = [key[0].in_size for key in _autotune._CHOICES]
    assert remembered == [(8, 8), (9, 9), (10, 10)]
    assert len(pcf.tuning.report()) == 6
    x, w = _problem_arrays(rng, c_in=2, c_out=2, size=5)
    pcf.conv2d(x, w, padding=1)  # from the tuning cache: no new entry
    assert len(pcf.tuning.report()) == 6 and len(_autotune._CHOICES) == 3


def test_bad_tune_mode_is_a_clear_error(fresh_cache, rng, monkeypatch):
    monkeypatch.setenv("PYCONVFAST_TUNE", "fast")
    x, w = _problem_arrays(rng)
    with pytest.raises(ValueError, match="PYCONVFAST_TUNE must be one of .* got 'fast'"):
        pcf.conv2d(x, w)


def test_a_second_process_reads_the_choice_from_the_cache(fresh_cache, rng):
    x, w = _problem_arrays(rng)
    pcf.conv2d(x, w, padding=1, n_threads=1)
    [entry] = pcf.tuning.report()
    script = (
        "import numpy as np, pyconvfast as pcf\n"
        "x = np.zeros((2, 8, 12, 12), np.float32); w = np.zeros((8, 8, 3, 3), np.float32)\n"
        "p = pcf.plan(x.shape, w, padding=1, n_threads=1)\n"
        "print(p.algorithm); print(p.explain())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    algorithm, explanation = done.stdout.split("\n", 1)
    assert algorithm == entry["algorithm"]
    assert "(cache)" in explanation


def test_a_cached_entry_that_cannot_run_the_problem_is_ignored(fresh_cache, rng, monkeypatch):
    """An entry naming an unknown or unsuitable algorithm must not be run: the tuner re-tunes."""
    x, w = _problem_arrays(rng)
    problem = pcf._api.make_problem(x.shape, w.shape, n_spatial=2, padding=1)
    cache = _cache.get_cache()
    key = _autotune.cache_key(problem, 1)
    cache.store(key, {"algorithm": "no_such_algorithm", "params": {}, "timings": {}})
    got = pcf.conv2d(x, w, padding=1, n_threads=1)
    assert_conv_matches(got, x, w, padding=1)
    assert cache.lookup(key)["algorithm"] in registry.names(problem)


def test_a_cached_entry_with_foreign_params_is_ignored(fresh_cache, rng):
    x, w = _problem_arrays(rng)
    problem = pcf._api.make_problem(x.shape, w.shape, n_spatial=2, padding=1)
    entry = {"algorithm": "im2col", "params": {"max_chunk": -3}, "timings": {}}
    assert _autotune._from_entry(problem, entry) is None
    entry = {"algorithm": "im2col", "plan_algorithm": "im2col", "plan_params": {"max_chunk": -3}}
    assert _autotune._from_entry(problem, entry) is None
    entry = {"algorithm": "im2col", "plan_algorithm": "no_such_algorithm"}
    assert _autotune._from_entry(problem, entry) is None
    assert _autotune._from_entry(problem, {"algorithm": "im2col", "params": {},
                                           "timings": {}}).algorithm == "im2col"


def test_four_processes_tuning_different_problems_at_once_lose_nothing(fresh_cache, tmp_path):
    """Four ``python -m pyconvfast tune`` processes, started together on different shapes: every
    choice ends up in the one file, which stays valid JSON."""
    commands = []
    for worker in range(4):
        shapes = [{"x_shape": [1, 4 + worker, 6 + size, 6 + size],
                   "w_shape": [4, 4 + worker, 3, 3], "padding": 1} for size in range(3)]
        path = tmp_path / f"shapes{worker}.json"
        path.write_text(json.dumps(shapes))
        commands.append([sys.executable, "-m", "pyconvfast", "tune", str(path), "--threads", "1"])
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for command in commands]
    results = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, err) in zip(workers, results):
        assert worker.returncode == 0, err
        assert "Warning" not in err, err
    document = json.loads((fresh_cache / "tuning.json").read_text())
    (section,) = document["machines"].values()
    keys = set(section["entries"])
    assert len(keys) == 12, keys
    assert {key.split("|")[2] for key in keys} == {"c4", "c5", "c6", "c7"}


def test_plan_reuses_its_prepared_weight(fresh_cache, rng):
    x, w = _problem_arrays(rng)
    bias = rng.standard_normal(8).astype(np.float32)
    plan = pcf.plan(x.shape, w, bias, padding=1)
    assert plan.algorithm in pcf.list_algorithms(x, w, padding=1)
    for _ in range(3):
        x = rng.standard_normal(x.shape).astype(np.float32)
        assert_conv_matches(plan(x), x, w, bias, padding=1)
    out = np.empty_like(plan(x))
    assert plan(x, out=out) is out
    text = plan.explain()
    assert plan.algorithm in text and "candidates" in text


def _plan_with_finalists(monkeypatch, x, w, doubles, chosen, warm, cold, **kwargs):
    """A plan whose tuner (replaced) picked ``chosen`` among the registered ``doubles`` with
    these timings."""
    from pyconvfast import _plan

    for name, algorithm in doubles.items():
        monkeypatch.setitem(registry._ALGORITHMS, name, algorithm)
    choice = _autotune.Choice(chosen, timings=warm, source="measured", cold_timings=cold)
    monkeypatch.setattr(_plan.autotune, "choose", lambda *args: choice)
    return pcf.plan(x.shape, w, **kwargs)


def test_a_plan_times_close_finalists_on_its_first_calls_and_keeps_the_fastest(
        fresh_cache, rng, monkeypatch):
    """The tuner picked the slower of two close finalists (another process, other work around
    it): the plan's own first calls find the faster one, and every call's result is right."""
    from pyconvfast._plan import TRIAL_ROUNDS

    ran = []
    doubles = {"test_slow": _slowed("test_slow", registry.get("direct"), 0.02, 0.0, ran),
               "test_fast": _slowed("test_fast", registry.get("im2col"), 0.0, 0.0, ran)}
    x, w = _problem_arrays(rng)
    bias = rng.standard_normal(8).astype(np.float32)
    times = {"test_slow": 0.010, "test_fast": 0.012}  # within the margin: both are timed
    plan = _plan_with_finalists(monkeypatch, x, w, doubles, "test_slow", times, times,
                                bias=bias, padding=1)
    assert not plan.settled and plan.algorithm == "test_slow"
    assert "timed on this plan's first calls: test_slow, test_fast" in plan.explain()
    for call in range(2 * TRIAL_ROUNDS + 3):
        x = rng.standard_normal(x.shape).astype(np.float32)
        assert_conv_matches(plan(x), x, w, bias, padding=1, context=f"call {call}")
    # one call of each per round, the order rotating from round to round
    assert ran == (["test_slow", "test_fast", "test_fast", "test_slow"] * TRIAL_ROUNDS)[
        :2 * TRIAL_ROUNDS] + ["test_fast"] * 3
    assert plan.settled and plan.algorithm == "test_fast"
    assert plan._runners is None  # the loser's prepared weight is dropped
    assert "close finalists on this plan's first calls" in plan.explain()


def test_a_plan_whose_finalists_are_far_apart_runs_its_pick_at_once(fresh_cache, rng,
                                                                   monkeypatch):
    from pyconvfast._plan import TRIAL_MARGIN

    ran = []
    doubles = {"test_pick": _slowed("test_pick", registry.get("direct"), 0.0, 0.0, ran),
               "test_far": _slowed("test_far", registry.get("im2col"), 0.0, 0.0, ran)}
    x, w = _problem_arrays(rng)
    warm = {"test_pick": 0.010, "test_far": 0.010 * TRIAL_MARGIN * 1.01}
    cold = {"test_pick": 0.020, "test_far": 0.020 * TRIAL_MARGIN * 1.01}
    plan = _plan_with_finalists(monkeypatch, x, w, doubles, "test_pick", warm, cold, padding=1)
    assert plan.settled
    plan(x)
    assert ran == ["test_pick"]


@pytest.mark.parametrize("other_seconds, kept", [(0.97, "test_pick"), (0.90, "test_other")])
def test_a_finalist_must_beat_the_tuners_pick_clearly_to_replace_it(
        fresh_cache, rng, monkeypatch, other_seconds, kept):
    """A few calls are noisy: 3% faster keeps the tuner's pick, 10% faster replaces it."""
    from types import SimpleNamespace

    from pyconvfast import _plan

    clock = [0.0]
    monkeypatch.setattr(_plan, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def taking(seconds, base):
        def run(*args):
            base.run(*args)
            clock[0] += seconds
        return registry.Algorithm(name="test", summary="test double", supports=base.supports,
                                   run=run, prepare=base.prepare)

    doubles = {"test_pick": taking(1.0, registry.get("direct")),
               "test_other": taking(other_seconds, registry.get("im2col"))}
    x, w = _problem_arrays(rng)
    times = {"test_pick": 0.010, "test_other": 0.011}
    plan = _plan_with_finalists(monkeypatch, x, w, doubles, "test_pick", times, times, padding=1)
    for _ in range(2 * _plan.TRIAL_ROUNDS):
        plan(x)
    assert plan.settled and plan.algorithm == kept


def test_a_plan_compares_its_finalists_call_by_call_and_by_the_median(fresh_cache, rng,
                                                                      monkeypatch):
    """On a machine whose speed drifts from round to round, and where the pick once had a
    lucky call far faster than its usual, the finalist 10% faster in every round wins: the
    best call of each (the pick's lucky one) would have kept the pick."""
    from types import SimpleNamespace

    from pyconvfast import _plan

    clock = [0.0]
    calls = [0]
    monkeypatch.setattr(_plan, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    drift = [1.0, 2.5, 0.7, 1.3, 3.0, 0.8, 1.1, 2.0, 0.9, 1.6]  # the machine's speed per round
    lucky_round = 5

    def taking(relative, base, lucky=1.0):
        def run(*args):
            base.run(*args)
            round_index = calls[0] // 2
            calls[0] += 1
            luck = lucky if round_index == lucky_round else 1.0
            clock[0] += relative * drift[round_index % len(drift)] * luck
        return registry.Algorithm(name="test", summary="test double", supports=base.supports,
                                   run=run, prepare=base.prepare)

    doubles = {"test_pick": taking(1.0, registry.get("direct"), lucky=0.5),
               "test_other": taking(0.9, registry.get("im2col"))}
    x, w = _problem_arrays(rng)
    times = {"test_pick": 0.010, "test_other": 0.011}
    plan = _plan_with_finalists(monkeypatch, x, w, doubles, "test_pick", times, times, padding=1)
    for _ in range(2 * _plan.TRIAL_ROUNDS):
        plan(x)
    assert plan.settled and plan.algorithm == "test_other"
    text = plan.explain()
    assert "median time over test_pick's in the same round" in text
    assert "test_other                            0.900" in text


def test_a_plan_in_its_trial_is_safe_from_several_threads(fresh_cache, rng, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    doubles = {"test_a": _slowed("test_a", registry.get("direct"), 0.001, 0.0),
               "test_b": _slowed("test_b", registry.get("im2col"), 0.0, 0.0)}
    x, w = _problem_arrays(rng)
    times = {"test_a": 0.010, "test_b": 0.010}
    plan = _plan_with_finalists(monkeypatch, x, w, doubles, "test_a", times, times, padding=1)
    inputs = [rng.standard_normal(x.shape).astype(np.float32) for _ in range(24)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(plan, inputs))
    for x_i, got in zip(inputs, results):
        assert_conv_matches(got, x_i, w, padding=1)
    assert plan.settled


EXPLICIT_KWARGS = dict(groups=2, padding="same", padding_mode="circular", layout="NLC")


@pytest.mark.parametrize("algorithm",
                         pcf.list_algorithms((3, 9, 6), (4, 3, 5), **EXPLICIT_KWARGS))
def test_plan_with_an_explicit_algorithm(fresh_cache, rng, algorithm):
    x = rng.standard_normal((3, 9, 6)).astype(np.float64)  # NLC: 6 channels last
    w = rng.standard_normal((4, 3, 5)).astype(np.float64)
    kwargs = EXPLICIT_KWARGS
    plan = pcf.plan(x.shape, w, algorithm=algorithm, **kwargs)
    assert plan.algorithm == algorithm
    assert_conv_matches(plan(x), x, w, **kwargs)
    assert list(fresh_cache.iterdir()) == []  # nothing tuned, nothing written


def test_plan_input_checks(fresh_cache, rng):
    x, w = _problem_arrays(rng)
    plan = pcf.plan(x.shape, w, algorithm="direct")
    with pytest.raises(ValueError, match=r"this plan is for x.shape=\(2, 8, 12, 12\), got"):
        plan(x[:1])
    with pytest.raises(TypeError, match="this plan is for float32 input, got x of dtype float64"):
        plan(x.astype(np.float64))
    with pytest.raises(ValueError, match="out has shape"):
        plan(x, out=np.empty((2, 8, 3, 3), np.float32))
    with pytest.raises(ValueError, match="weight must be 3-, 4- or 5-D"):
        pcf.plan(x.shape, np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="groups=3 must divide both C_in=8 and C_out=8"):
        pcf.plan(x.shape, w, algorithm="direct", groups=3)
    with pytest.raises(ValueError, match="algorithm='depthwise' cannot run this problem"):
        pcf.plan(x.shape, w, algorithm="depthwise")
    with pytest.raises(ValueError, match="unknown algorithm"):
        pcf.plan(x.shape, w, algorithm="fastest")


def test_plan_of_an_empty_batch(fresh_cache):
    w = np.ones((4, 2, 3), np.float32)
    plan = pcf.plan((0, 2, 10), w)
    assert plan(np.ones((0, 2, 10), np.float32)).shape == (0, 4, 8)


def test_tune_command_with_a_shapes_file(fresh_cache, tmp_path, capsys):
    from pyconvfast.__main__ import main

    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps([
        {"name": "a", "x_shape": [1, 4, 10, 10], "w_shape": [8, 4, 3, 3], "padding": 1},
        {"x_shape": [1, 6, 50], "w_shape": [6, 1, 5], "groups": 6, "dtype": "float64"},
        {"x_shape": [1, 2, 9, 9], "w_shape": [2, 2, 3, 3], "padding": [[1, 0], [0, 1]]},
    ]))
    assert main(["tune", str(shapes), "--threads", "1"]) == 0
    assert "tuned 3 layers" in capsys.readouterr().out
    assert len(pcf.tuning.report()) == 3


def test_tune_command_bad_input(fresh_cache, tmp_path, capsys):
    from pyconvfast.__main__ import main

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read"):
        main(["tune", str(bad)])
    bad.write_text(json.dumps([{"x_shape": [1, 4, 10, 10], "w_shape": [8, 3, 3, 3]}]))
    assert main(["tune", str(bad)]) == 2
    assert "C_in=4" in capsys.readouterr().err


def test_cache_commands(fresh_cache, tmp_path, rng, capsys):
    from pyconvfast.__main__ import main

    x, w = _problem_arrays(rng)
    pcf.conv2d(x, w, padding=1)
    assert main(["cache", "path"]) == 0
    assert str(fresh_cache) in capsys.readouterr().out
    assert main(["cache", "show"]) == 0
    assert "1 entries" in capsys.readouterr().out
    exported = tmp_path / "export.json"
    assert main(["cache", "export", str(exported)]) == 0
    assert main(["cache", "clear"]) == 0
    assert pcf.tuning.report() == []
    assert main(["cache", "load", str(exported)]) == 0
    assert len(pcf.tuning.report()) == 1
    assert main(["cache", "export"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["cache", "load", str(bad)]) == 1


def test_bench_command(fresh_cache, capsys):
    from pyconvfast.__main__ import main

    assert main(["bench", "--x-shape", "1,4,16,16", "--w-shape", "4,4,3,3", "--padding", "1",
                 "--repeats", "2", "--threads", "1"]) == 0
    table = capsys.readouterr().out
    usable = pcf.list_algorithms((1, 4, 16, 16), (4, 4, 3, 3), padding=1)
    for name in usable + ["auto ("]:
        assert name in table
    assert main(["bench", "--x-shape", "1,4,16,16", "--w-shape", "4,3,3,3"]) == 2


# --- large problems are timed on a slice (issue 18, item 6) ---------------------------------------

def test_large_problem_is_timed_on_a_slice_and_the_choice_serves_the_whole(
        fresh_cache, monkeypatch, rng, caplog):
    """Above TIMING_FLOPS the candidates run on a slice (first samples, then a band of rows);
    the choice is stored under the whole problem's key and its result is the whole result."""
    monkeypatch.setattr(_autotune, "TIMING_FLOPS", 2e6)
    monkeypatch.setattr(_timing, "MIN_SLICE_OUTPUTS", 8)
    seen = []
    real_run = _autotune.time_candidates

    def spy(labels, run, *args, **kwargs):
        seen.append(list(labels))
        return real_run(labels, run, *args, **kwargs)

    monkeypatch.setattr(_autotune, "time_candidates", spy)
    x = rng.standard_normal((3, 8, 40, 24)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    kwargs = dict(padding=(5, 1), padding_mode="reflect")
    with caplog.at_level("INFO", logger="pyconvfast"):
        got = pcf.conv2d(x, w, **kwargs)
    assert seen, "nothing was timed"
    assert "on a slice of it" in caplog.text and "|n1|" in caplog.text
    assert_conv_matches(got, x, w, algorithm="auto", **kwargs)
    problem = _api.make_problem(x.shape, w.shape, n_spatial=2, dtype=np.float32, **kwargs)
    report = pcf.tuning.report()
    assert any(entry["key"].startswith(problem.key) for entry in report)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular", "replicate"])
def test_timing_slice_keeps_the_geometry_and_views_the_arrays(padding_mode):
    problem = _api.make_problem((4, 16, 150, 100), (8, 16, 5, 3), n_spatial=2, padding=(4, 1),
                                stride=(2, 1), padding_mode=padding_mode, dtype=np.float32)
    x = np.zeros((4, 16, 1, 150, 100), np.float32)
    out = np.zeros((4, 8, 1) + problem.out_size, np.float32)
    piece, x_piece, out_piece = _timing.timing_slice(problem, x, out, flops=problem.flops / 40)
    assert piece.batch == 1 and piece.in_size[0] < 150 and piece.in_size[1] < 100
    assert min(piece.out_size) >= _timing.MIN_SLICE_OUTPUTS
    assert (piece.kernel, piece.stride, piece.pad_before, piece.pad_after, piece.padding_mode) \
        == (problem.kernel, problem.stride, problem.pad_before, problem.pad_after, padding_mode)
    assert x_piece.shape == (1, 16, 1) + piece.in_size and np.shares_memory(x_piece, x)
    assert out_piece.shape == (1, 8, 1) + piece.out_size and np.shares_memory(out_piece, out)
    assert piece.flops <= problem.flops / 40 * 1.5
    same = _timing.timing_slice(problem, x, out, flops=problem.flops)
    assert same[0] is problem and same[1] is x and same[2] is out


def test_a_plan_times_the_plain_calls_choice_and_plain_calls_follow_its_verdict(
        fresh_cache, rng, monkeypatch):
    """Issue 13: a settled auto plan ran 1.3x slower than the plain auto call of the same
    problem. A plain call on a new weight runs the call's pick (run + preparation), a plan the
    plan's pick (run alone); the plan also times the call's pick on its first calls, however
    far behind the tuner measured it, keeps the faster, and a plain call that has seen the
    weight before runs what the plan settled on (the resolution it remembered is dropped)."""
    from types import SimpleNamespace

    from pyconvfast import _plan

    clock = [0.0]
    monkeypatch.setattr(_plan, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    ran = []

    def taking(name, seconds, base):
        def run(*args):
            base.run(*args)
            clock[0] += seconds
            ran.append(name)
        return registry.Algorithm(name=name, summary="test double", supports=base.supports,
                                   run=run, prepare=base.prepare)

    for name, seconds, base in (("test_plan_pick", 1.0, "direct"),
                                ("test_call_pick", 0.5, "im2col")):
        monkeypatch.setitem(registry._ALGORITHMS, name,
                            taking(name, seconds, registry.get(base)))
    x, w = _problem_arrays(rng)
    problem = _api.make_problem(x.shape, w.shape, n_spatial=2, padding=1)
    # what the tuner measured: the call's pick 3x slower to run, beyond the trial margin
    times = {"test_plan_pick": 0.010, "test_call_pick": 0.030}
    _autotune._remember((problem, 1, "measure"), _autotune.Choice(
        "test_call_pick", {}, times, "measured", {}, "test_plan_pick", {}, cold_timings=times))
    for _ in range(2):  # the second call has seen the weight: the plan's pick, remembered
        assert_conv_matches(pcf.conv2d(x, w, padding=1, n_threads=1), x, w, padding=1)
    assert ran == ["test_call_pick", "test_plan_pick"]
    plan = pcf.plan(x.shape, w, padding=1, n_threads=1)
    assert not plan.settled
    assert "timed on this plan's first calls: test_plan_pick, test_call_pick" in plan.explain()
    for _ in range(2 * _plan.TRIAL_ROUNDS):
        assert_conv_matches(plan(x), x, w, padding=1)
    assert plan.settled and plan.algorithm == "test_call_pick"
    ran.clear()
    assert_conv_matches(pcf.conv2d(x, w, padding=1, n_threads=1), x, w, padding=1)
    assert ran == ["test_call_pick"]


@pytest.mark.parametrize("layer", ["stem", "transposed"])
def test_an_auto_plan_and_a_plain_call_resolve_to_the_same_choice(fresh_cache, rng, layer):
    """Issue 13's layers (a 3-channel 7x7 stride-2 stem; a k4 stride-2 transposed layer),
    timed for real: whatever the timings, the plan either picks what the plain call picks or
    times that among its finalists, and once settled, a plain call that has seen the weight
    runs the plan's choice."""
    from pyconvfast import _transpose

    if layer == "stem":
        x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
        w = rng.standard_normal((64, 3, 7, 7)).astype(np.float32)
        function, kwargs = pcf.conv2d, {"stride": 2, "padding": 3}
        problem = _api.make_problem(x.shape, w.shape, n_spatial=2, **kwargs)
    else:
        x = rng.standard_normal((1, 128, 32, 32)).astype(np.float32)
        w = rng.standard_normal((128, 64, 4, 4)).astype(np.float32)
        function, kwargs = pcf.conv_transpose2d, {"stride": 2, "padding": 1}
        problem = _transpose.make_problem(x.shape, w.shape, n_spatial=2, **kwargs)
    expected = function(x, w, n_threads=2, **kwargs)  # tunes
    choice = _autotune.choose(problem, 2, None, None, None, None)  # remembered: no timing
    called = _autotune.candidate_label(choice.algorithm, choice.params)
    plan = pcf.plan(x.shape, w, transposed=layer == "transposed", n_threads=2, **kwargs)
    if plan.settled:
        assert _autotune.candidate_label(plan.algorithm, plan.params) == called
    else:
        assert called in plan.explain().split("timed on this plan's first calls: ")[1]
    while not plan.settled:
        got = plan(x)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    seen = _autotune.choose(problem, 2, None, None, None, None).for_plan()
    assert (seen.algorithm, seen.params) == (plan.algorithm, plan.params)


@pytest.mark.parametrize("losses, kept", [(3, "test_pick"), (2, "test_other")])
def test_a_finalist_must_win_most_rounds_to_replace_the_pick(fresh_cache, rng, monkeypatch,
                                                            losses, kept):
    """20% faster by the median but slower in 3 of the 9 timed rounds is noise (a loaded
    machine's scheduler), not a lead: the tuner's pick stays; slower in 2 rounds, it goes."""
    from types import SimpleNamespace

    from pyconvfast import _plan

    clock = [0.0]
    calls = [0]
    monkeypatch.setattr(_plan, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    other = [0.8] * (_plan.TRIAL_ROUNDS - losses) + [1.2] * losses  # round 0 is untimed

    def taking(relative, base):
        def run(*args):
            base.run(*args)
            round_index = calls[0] // 2
            calls[0] += 1
            clock[0] += relative[round_index] if round_index < len(relative) else 1.0
        return registry.Algorithm(name="test", summary="test double", supports=base.supports,
                                   run=run, prepare=base.prepare)

    doubles = {"test_pick": taking([1.0] * _plan.TRIAL_ROUNDS, registry.get("direct")),
               "test_other": taking(other, registry.get("im2col"))}
    x, w = _problem_arrays(rng)
    times = {"test_pick": 0.010, "test_other": 0.011}
    plan = _plan_with_finalists(monkeypatch, x, w, doubles, "test_pick", times, times, padding=1)
    for _ in range(2 * _plan.TRIAL_ROUNDS):
        plan(x)
    assert plan.settled and plan.algorithm == kept
