"""The on-disk tuning cache: round trips, atomic and merged writes, concurrent processes, every
kind of bad file (a warning, once, then memory only), fingerprints, export/load, lookup cost."""

import contextlib
import json
import os
import pathlib
import pickle
import subprocess
import sys
import time
import warnings

import filelock
import platformdirs
import pytest

import pyconvfast as pcf
from pyconvfast.tuning import fingerprint, schema
from pyconvfast.tuning import storage as _storage
from pyconvfast.tuning import store as _cache

ENTRY = {"algorithm": "im2col", "params": {"block": 64, "packed": True, "order": "kcrs",
                                           "ratio": 0.5},
         "timings": {"direct": 2.5e-3, "im2col": 1.25e-3}}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test starts as a new process would: no kind of problem warned about yet."""
    monkeypatch.setattr(schema, "_WARNED", set())


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(folder))
    return folder


@contextlib.contextmanager
def no_warnings():
    """A context in which any warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def this_machine(cache_dir):
    cache = _cache.TuningCache()
    return cache.fingerprint_id, cache.fingerprint


# ---------------------------------------------------------------------------------------------
# Round trips, atomic writes, merging


def test_round_trip_across_a_fresh_cache(cache_dir):
    first = _cache.TuningCache()
    assert first.lookup("conv2d|a") is None
    first.store("conv2d|a", ENTRY)
    assert first.lookup("conv2d|a")["algorithm"] == "im2col"

    second = _cache.TuningCache()  # what a second process sees
    found = second.lookup("conv2d|a")
    assert found["algorithm"] == "im2col"
    assert found["params"] == ENTRY["params"]
    assert found["timings"] == ENTRY["timings"]
    assert isinstance(found["created"], str)
    document = read_json(cache_dir / "tuning.json")
    assert document["schema"] == 1
    assert list(document["machines"]) == [second.fingerprint_id]


def test_store_fills_created_and_keeps_extra_fields(cache_dir):
    cache = _cache.TuningCache()
    cache.store("k", {**ENTRY, "tune": "exhaustive", "n_threads": 2, "note": None})
    entry = _cache.TuningCache().lookup("k")
    assert entry["tune"] == "exhaustive" and entry["n_threads"] == 2 and entry["note"] is None
    import datetime
    datetime.datetime.fromisoformat(entry["created"])


def test_atomic_write_leaves_no_temporary_files(cache_dir):
    cache = _cache.TuningCache()
    for i in range(5):
        cache.store(f"k{i}", ENTRY)
    assert sorted(p.name for p in cache_dir.iterdir()) == ["tuning.json", "tuning.json.lock"]


def test_failed_write_removes_its_temporary_file_and_keeps_the_old_file(cache_dir, monkeypatch):
    cache = _cache.TuningCache()
    cache.store("old", ENTRY)
    before = (cache_dir / "tuning.json").read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_cache.os, "replace", fail)
    with pytest.warns(RuntimeWarning, match="cannot write"):
        cache.store("new", ENTRY)
    assert cache.lookup("new") is not None  # memory still has it
    assert sorted(p.name for p in cache_dir.iterdir()) == ["tuning.json", "tuning.json.lock"]
    assert (cache_dir / "tuning.json").read_bytes() == before


def _linked_cache_file(cache_dir, tmp_path):
    """``cache_dir/tuning.json`` as a relative symbolic link to a file in another folder (a
    cache kept on another disk, or shared by a team); returns ``(link, target)``."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache_dir.mkdir()
    link, target = cache_dir / "tuning.json", elsewhere / "shared-tuning.json"
    link.symlink_to(os.path.join("..", "elsewhere", target.name))
    return link, target


def test_a_symlinked_cache_file_is_written_through_and_stays_a_link(cache_dir, tmp_path):
    link, target = _linked_cache_file(cache_dir, tmp_path)
    fid, fingerprint = this_machine(cache_dir)
    other = {"fingerprint": {**fingerprint, "cpu_model": "another CPU"},
             "entries": {"theirs": {**ENTRY, "created": "2025-01-01T00:00:00+00:00"}}}
    target.write_text(json.dumps({"schema": 1, "machines": {"other": other}}))
    cache = _cache.TuningCache()
    assert cache.lookup("k") is None
    cache.store("k", ENTRY)
    cache.store("k2", ENTRY)
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "elsewhere", target.name)
    document = read_json(target)
    assert set(document["machines"][fid]["entries"]) == {"k", "k2"}
    assert document["machines"]["other"] == other  # merged into the target, not beside it
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporaries
    assert sorted(p.name for p in cache_dir.iterdir()) == ["tuning.json", "tuning.json.lock"]
    assert _cache.TuningCache().lookup("k2")["algorithm"] == "im2col"  # a second process
    cache.clear()
    assert link.is_symlink() and fid not in read_json(target)["machines"]


def test_a_dangling_symlink_is_created_through(cache_dir, tmp_path):
    link, target = _linked_cache_file(cache_dir, tmp_path)  # no target yet
    with no_warnings():
        _cache.TuningCache().store("k", ENTRY)
    assert link.is_symlink() and target.is_file()
    assert _cache.TuningCache().lookup("k")["algorithm"] == "im2col"


def test_a_corrupt_symlinked_file_is_moved_aside_beside_its_target(cache_dir, tmp_path):
    link, target = _linked_cache_file(cache_dir, tmp_path)
    target.write_text("{ not json")
    with pytest.warns(RuntimeWarning, match="ignoring .*tuning.json"):
        _cache.TuningCache().store("k", ENTRY)
    assert link.is_symlink() and target.is_file()
    assert (target.parent / "shared-tuning.json.corrupt").read_text() == "{ not json"
    assert _cache.TuningCache().lookup("k")["algorithm"] == "im2col"


def test_export_writes_through_a_symlink(cache_dir, tmp_path):
    _cache.get_cache().store("k", ENTRY)
    target = tmp_path / "wisdom-target.json"
    link = tmp_path / "wisdom.json"
    link.symlink_to(target)
    pcf.tuning.export(link)
    assert link.is_symlink() and set(
        next(iter(read_json(target)["machines"].values()))["entries"]) == {"k"}


def test_two_caches_on_one_folder_merge(cache_dir):
    one, two = _cache.TuningCache(), _cache.TuningCache()
    one.lookup("x"), two.lookup("x")  # both loaded (the empty file) before either stores
    one.store("from-one", ENTRY)
    two.store("from-two", {**ENTRY, "algorithm": "direct"})
    entries = next(iter(read_json(cache_dir / "tuning.json")["machines"].values()))["entries"]
    assert sorted(entries) == ["from-one", "from-two"]
    # and a miss re-reads the file that the other one changed
    assert one.lookup("from-two")["algorithm"] == "direct"


def test_a_later_store_for_the_same_key_replaces_it(cache_dir):
    one, two = _cache.TuningCache(), _cache.TuningCache()
    one.store("k", ENTRY)
    two.store("k", {**ENTRY, "algorithm": "direct"})
    assert _cache.TuningCache().lookup("k")["algorithm"] == "direct"


WORKER = """
import os, sys, time, warnings
warnings.simplefilter("error")
from pyconvfast.tuning import store as _cache
folder, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cache = _cache.get_cache()
cache.fingerprint_id  # the fingerprint before the start, so that the writes overlap
open(os.path.join(folder, f"ready{worker}"), "w").close()
while not os.path.exists(os.path.join(folder, "go")):
    time.sleep(0.002)
for i in range(count):
    cache.store(f"conv2d|worker{worker}|problem{i}",
                {"algorithm": "direct", "params": {"worker": worker}, "timings": {"direct": i}})
"""


def _run_workers_at_once(script, cache_dir, tmp_path, n_workers, count):
    """Start ``n_workers`` processes of ``script`` storing ``count`` entries each, release them
    together once all are ready, and check that each ended cleanly, with no warning."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYCONVFAST_CACHE_DIR": str(cache_dir)}
    workers = [subprocess.Popen([sys.executable, "-c", script, str(barrier), str(w), str(count)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
               for w in range(n_workers)]
    try:
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("ready*"))) < n_workers:
            assert time.monotonic() < deadline, "the workers did not start"
            assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
            time.sleep(0.01)
        (barrier / "go").touch()
        results = [w.communicate(timeout=240) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (out, err) in zip(workers, results):
        assert w.returncode == 0, err
        assert "Warning" not in err, err


def test_four_processes_storing_at_the_same_time_lose_nothing(cache_dir, tmp_path):
    n_workers, count = 4, 15
    _run_workers_at_once(WORKER, cache_dir, tmp_path, n_workers, count)
    document = read_json(cache_dir / "tuning.json")  # valid JSON
    (section,) = document["machines"].values()
    expected = {f"conv2d|worker{w}|problem{i}" for w in range(n_workers) for i in range(count)}
    assert set(section["entries"]) == expected
    assert set(_cache.TuningCache().entries()) == expected
    assert not list(cache_dir.glob("*.tmp"))


def _store_in_child(key):
    _cache.get_cache().store(key, ENTRY)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_its_own_cache(cache_dir):
    import multiprocessing

    parent = _cache.get_cache()
    parent.store("from-parent", ENTRY)
    child = multiprocessing.get_context("fork").Process(target=_store_in_child,
                                                        args=("from-child",))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert _cache.get_cache() is parent
    assert parent.lookup("from-child") is not None  # the miss re-read the changed file


# ---------------------------------------------------------------------------------------------
# Bad files: a warning, once, and the cache works in memory


def _pickle_payload(marker, protocol):
    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the marker file

    return pickle.dumps(Boom(), protocol=protocol)


BAD_FILES = {
    "invalid JSON": b'{"schema": 1, "machines": {',
    "truncated": None,  # a valid file cut in half, made in the test
    "a list": b"[1, 2, 3]",
    "a string": b'"tuning"',
    "no schema": b'{"machines": {}}',
    "schema as a string": b'{"schema": "1", "machines": {}}',
    "machines as a list": b'{"schema": 1, "machines": []}',
    "NaN": b'{"schema": 1, "machines": {}, "x": NaN}',
    "not UTF-8": b'{"schema": 1, "machines": {"\xff\xfe": {}}}',
    "empty": b"",
    "deeply nested": b"[" * 100000 + b"]" * 100000,
    "pickle protocol 0": "pickle0",
    "pickle highest protocol": "pickle5",
}


def _write_bad_file(kind, cache_dir, marker):
    cache_dir.mkdir(parents=True, exist_ok=True)
    content = BAD_FILES[kind]
    if content is None:
        _cache.TuningCache().store("k", ENTRY)
        content = (cache_dir / "tuning.json").read_bytes()
        content = content[: len(content) // 2]
    elif content == "pickle0":
        content = _pickle_payload(marker, 0)
    elif content == "pickle5":
        content = _pickle_payload(marker, pickle.HIGHEST_PROTOCOL)
    (cache_dir / "tuning.json").write_bytes(content)
    return content


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_corrupt_file_warns_once_and_the_cache_works_in_memory(kind, cache_dir, tmp_path):
    marker = tmp_path / "executed"
    content = _write_bad_file(kind, cache_dir, marker)
    schema._WARNED.clear()
    cache = _cache.TuningCache()
    with pytest.warns(RuntimeWarning, match="tuning cache: ignoring .*tuning.json"):
        assert cache.lookup("k") is None
    with no_warnings():  # once: neither the next misses, nor a store, nor a second cache warn
        assert cache.lookup("other") is None
        cache.store("k", ENTRY)
        assert cache.lookup("k")["algorithm"] == "im2col"
        assert _cache.TuningCache().lookup("zzz") is None
    assert not marker.exists()
    # The store healed the file; the bad one is kept aside for a post-mortem.
    assert (cache_dir / "tuning.json.corrupt").read_bytes() == content
    assert _cache.TuningCache().lookup("k")["algorithm"] == "im2col"


def test_the_pickle_is_never_executed_by_load_either(cache_dir, tmp_path):
    marker = tmp_path / "executed"
    for protocol in (0, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"wisdom{protocol}.pkl"
        path.write_bytes(_pickle_payload(marker, protocol))
        with pytest.raises(ValueError, match="not a pyconvfast tuning file"):
            pcf.tuning.load(path)
    assert not marker.exists()


def test_wrong_types_inside_entries_drop_those_entries_only(cache_dir):
    fid, fingerprint = this_machine(cache_dir)
    good = {**ENTRY, "created": "2024-01-01T00:00:00+00:00"}
    bad_entries = {
        "algorithm-not-str": {**good, "algorithm": 3},
        "algorithm-empty": {**good, "algorithm": ""},
        "params-list": {**good, "params": [1, 2]},
        "params-empty-list": {**good, "params": []},
        "params-null": {**good, "params": None},
        "plan-params-list": {**good, "plan_algorithm": "im2col", "plan_params": []},
        "plan-algorithm-empty": {**good, "plan_algorithm": ""},
        "prepare-timings-negative": {**good, "prepare_timings": {"direct": -1.0}},
        "cold-timings-str": {**good, "cold_timings": {"direct": "cold"}},
        "param-value-dict": {**good, "params": {"a": {"b": 1}}},
        "timings-str": {**good, "timings": {"direct": "fast"}},
        "timings-negative": {**good, "timings": {"direct": -1.0}},
        "timings-bool": {**good, "timings": {"direct": True}},
        "created-number": {**good, "created": 12},
        "created-not-a-date": {**good, "created": "yesterday"},
        "entry-a-list": ["im2col"],
        "extra-field-a-list": {**good, "extra": [1]},
    }
    document = {"schema": 1, "machines": {fid: {"fingerprint": fingerprint,
                                               "entries": {"good": good, **bad_entries}}}}
    cache_dir.mkdir()
    (cache_dir / "tuning.json").write_text(json.dumps(document))
    cache = _cache.TuningCache()
    with pytest.warns(RuntimeWarning, match="invalid entry"):
        assert cache.lookup("good")["algorithm"] == "im2col"
    with no_warnings():
        for key in bad_entries:
            assert cache.lookup(key) is None
    assert set(cache.entries()) == {"good"}
    cache.store("new", ENTRY)  # rewriting this machine's section drops the invalid entries
    entries = read_json(cache_dir / "tuning.json")["machines"][fid]["entries"]
    assert set(entries) == {"good", "new"}


def test_a_section_of_our_id_that_is_not_ours_is_replaced(cache_dir):
    fid, _ = this_machine(cache_dir)
    cache_dir.mkdir()
    (cache_dir / "tuning.json").write_text(json.dumps({"schema": 1, "machines": {fid: [1]}}))
    # A section of our id but not our fingerprint is not ours: silently not used.
    cache = _cache.TuningCache()
    with no_warnings():
        assert cache.lookup("k") is None
        cache.store("k", ENTRY)
    assert _cache.TuningCache().lookup("k") is not None


def test_a_newer_schema_is_left_alone(cache_dir):
    cache_dir.mkdir()
    newer = json.dumps({"schema": 2, "whatever": {"new": "format"}})
    (cache_dir / "tuning.json").write_text(newer)
    cache = _cache.TuningCache()
    with pytest.warns(RuntimeWarning, match="newer pyconvfast"):
        assert cache.lookup("k") is None
    cache.store("k", ENTRY)
    assert cache.lookup("k")["algorithm"] == "im2col"
    assert (cache_dir / "tuning.json").read_text() == newer
    with pytest.raises(OSError, match="newer pyconvfast"):
        cache.clear()


def test_an_unreadable_file_warns_once(cache_dir):
    cache_dir.mkdir()
    path = cache_dir / "tuning.json"
    path.write_text(json.dumps({"schema": 1, "machines": {}}))
    path.chmod(0)
    try:
        try:
            with open(path, "rb"):
                pytest.skip("this user (root?) can read a file with mode 000")
        except PermissionError:
            pass
        cache = _cache.TuningCache()
        with pytest.warns(RuntimeWarning, match="cannot read"):
            assert cache.lookup("k") is None
        with no_warnings():
            cache.store("k", ENTRY)  # not written: the file's content could not be merged
        assert cache.lookup("k")["algorithm"] == "im2col"
    finally:
        path.chmod(0o644)
    assert read_json(path) == {"schema": 1, "machines": {}}


def test_a_directory_in_place_of_the_file_warns_once(cache_dir):
    # Unreadable even for root.
    (cache_dir / "tuning.json").mkdir(parents=True)
    cache = _cache.TuningCache()
    with pytest.warns(RuntimeWarning, match="cannot read"):
        assert cache.lookup("k") is None
    with no_warnings():
        cache.store("k", ENTRY)
        assert cache.lookup("k")["algorithm"] == "im2col"


def test_an_unwritable_folder_warns_once(tmp_path, monkeypatch):
    # A folder under a regular file can be created by no one, root included.
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    cache = _cache.get_cache()
    assert cache.lookup("k") is None
    with pytest.warns(RuntimeWarning, match="cannot write"):
        cache.store("k", ENTRY)
    with no_warnings():
        cache.store("k2", ENTRY)
        assert cache.lookup("k")["algorithm"] == "im2col"
        assert cache.lookup("k2")["algorithm"] == "im2col"
        assert set(pcf.tuning.report()[i]["key"] for i in range(2)) == {"k", "k2"}


def test_a_read_only_folder_warns_once(cache_dir):
    cache_dir.mkdir()
    cache_dir.chmod(0o555)
    try:
        probe = cache_dir / "probe"
        try:
            probe.touch()
            probe.unlink()
            pytest.skip("this user (root?) can write in a folder with mode 555")
        except PermissionError:
            pass
        cache = _cache.TuningCache()
        with pytest.warns(RuntimeWarning, match="cannot write"):
            cache.store("k", ENTRY)
        assert cache.lookup("k")["algorithm"] == "im2col"
    finally:
        cache_dir.chmod(0o755)


def test_a_held_lock_times_out_warns_once_and_stores_later(cache_dir, monkeypatch):
    monkeypatch.setattr(_storage, "LOCK_TIMEOUT", 0.2)
    cache_dir.mkdir()
    holder = filelock.FileLock(str(cache_dir / "tuning.json.lock"))
    cache = _cache.TuningCache()
    with holder.acquire(timeout=1):
        with pytest.warns(RuntimeWarning, match="could not lock"):
            cache.store("k1", ENTRY)
        assert cache.lookup("k1")["algorithm"] == "im2col"
        start = time.monotonic()
        with no_warnings():
            cache.store("k2", ENTRY)  # no second wait: the file is retried only later
        assert time.monotonic() - start < 0.15
        assert not (cache_dir / "tuning.json").exists()
    monkeypatch.setattr(_cache, "WRITE_RETRY_INTERVAL", 0.0)
    cache._write_retry_at = 0.0
    cache.store("k3", ENTRY)  # the lock is free again: everything unsaved goes to the file
    assert set(_cache.TuningCache().entries()) == {"k1", "k2", "k3"}


def test_clear_raises_when_the_lock_is_held(cache_dir, monkeypatch):
    monkeypatch.setattr(_storage, "LOCK_TIMEOUT", 0.1)
    cache = _cache.TuningCache()
    cache.store("k", ENTRY)
    with filelock.FileLock(str(cache_dir / "tuning.json.lock")).acquire(timeout=1):
        with pytest.raises(TimeoutError):
            cache.clear()
    assert cache.lookup("k") is not None  # nothing cleared
    cache.clear()
    assert cache.lookup("k") is None


def test_a_stale_lock_file_does_not_block(cache_dir, monkeypatch):
    # A lock file left by a killed process holds no lock (the OS lock died with the process).
    monkeypatch.setattr(_storage, "LOCK_TIMEOUT", 0.5)
    cache_dir.mkdir()
    (cache_dir / "tuning.json.lock").write_text("12345")
    with no_warnings():
        _cache.TuningCache().store("k", ENTRY)
    assert _cache.TuningCache().lookup("k") is not None


def test_each_kind_of_problem_warns_once_per_process(tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tuning.json").write_text("not json")
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(bad))
    with pytest.warns(RuntimeWarning, match="not valid JSON"):
        _cache.get_cache().lookup("k")
    bad2 = tmp_path / "bad2"
    bad2.mkdir()
    (bad2 / "tuning.json").write_text("[]")
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(bad2))
    with no_warnings():  # the same kind, another file: already said
        _cache.get_cache().lookup("k")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path / "a-file" / "x"))
    with pytest.warns(RuntimeWarning, match="cannot write"):  # another kind: said once more
        _cache.get_cache().store("k", ENTRY)


def test_store_rejects_bad_entries_from_the_caller(cache_dir):
    cache = _cache.TuningCache()
    for key, entry in [("", ENTRY), (3, ENTRY), ("k", {"params": {}}),
                       ("k", {**ENTRY, "timings": {"direct": float("nan")}}),
                       ("k", {**ENTRY, "params": {"a": None}}),
                       ("k", {**ENTRY, "timings": {"direct": float("inf")}}), ("k", "im2col")]:
        with pytest.raises(ValueError):
            cache.store(key, entry)
    assert not (cache_dir / "tuning.json").exists()


# ---------------------------------------------------------------------------------------------
# Fingerprints


def test_other_machines_and_versions_are_ignored_but_kept(cache_dir):
    fid, fingerprint = this_machine(cache_dir)
    older = {**fingerprint, "pyconvfast": "0.0.1"}
    other_blas = {**fingerprint, "blas": [{"internal_api": "mkl", "version": "2024.0",
                                           "architecture": "x", "threading_layer": "intel"}]}
    elsewhere = {"cpu_vendor": "AuthenticAMD", "cpu_model": "EPYC", "isa": ["avx2"],
                 "weird": {"nested": [1, 2]}}
    foreign = {"algorithm": "winograd_f4x4_3x3", "params": {}, "timings": {"x": 1.0},
               "created": "2024-01-01T00:00:00", "from": "elsewhere"}
    sections = {_cache.fingerprint_id(fp): {"fingerprint": fp, "entries": {"k": foreign}}
                for fp in (older, other_blas, elsewhere)}
    sections["not-even-valid"] = {"entries": "kept as it is"}
    assert fid not in sections
    cache_dir.mkdir()
    (cache_dir / "tuning.json").write_text(json.dumps({"schema": 1, "machines": sections}))

    cache = _cache.TuningCache()
    with no_warnings():
        assert cache.lookup("k") is None
        assert cache.entries() == {}
        assert pcf.tuning.report() == []
        cache.store("k", ENTRY)
        cache.clear()
        cache.store("k2", ENTRY)
    machines = read_json(cache_dir / "tuning.json")["machines"]
    for name, section in sections.items():
        assert machines[name] == section
    assert set(machines[fid]["entries"]) == {"k2"}


def test_fingerprint_content_and_id():
    fingerprint = _cache.machine_fingerprint()
    assert fingerprint["pyconvfast"] == pcf.__version__
    assert isinstance(fingerprint["isa"], list)
    assert all(isinstance(lib, dict) and "internal_api" in lib for lib in fingerprint["blas"])
    assert json.loads(json.dumps(fingerprint)) == fingerprint
    fid = _cache.fingerprint_id(fingerprint)
    assert len(fid) == 16 and int(fid, 16) >= 0
    assert _cache.fingerprint_id(json.loads(json.dumps(fingerprint))) == fid
    assert _cache.fingerprint_id({**fingerprint, "pyconvfast": "9.9"}) != fid
    fingerprint["isa"].append("mutating a copy")
    assert _cache.machine_fingerprint() != fingerprint


def test_cpuinfo_parsing_x86_and_arm():
    x86 = ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
           "model name\t: Intel(R) Xeon(R) Gold\nstepping\t: 7\nflags\t\t: fpu sse sse2 ssse3 "
           "sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile vmx pti\n\n"
           "processor\t: 1\nvendor_id\t: Other\nflags\t\t: sse\n")
    vendor, model, isa = fingerprint._cpu_from_proc(x86)
    assert vendor == "GenuineIntel"
    assert model == "Intel(R) Xeon(R) Gold (6, 85, 7)"
    assert isa == sorted(["sse", "sse2", "ssse3", "sse4_2", "avx", "avx2", "fma", "avx512f",
                          "avx512_vnni", "amx_tile"])
    arm = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32 "
           "asimddp sve sve2\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
           "CPU variant\t: 0x1\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n")
    vendor, model, isa = fingerprint._cpu_from_proc(arm)
    assert vendor == "0x41"
    assert "0xd0c" in model
    assert isa == ["asimd", "asimddp", "sve", "sve2"]


# ---------------------------------------------------------------------------------------------
# The public functions


def test_cache_path_honours_the_variable_and_defaults_to_platformdirs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path / "one"))
    assert pcf.tuning.cache_path() == tmp_path / "one" / "tuning.json"
    first = _cache.get_cache()
    assert _cache.get_cache() is first
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path / "two"))  # changed at run time
    assert pcf.tuning.cache_path() == tmp_path / "two" / "tuning.json"
    assert _cache.get_cache() is not first
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", "relative")
    assert pcf.tuning.cache_path() == tmp_path / "relative" / "tuning.json"
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv("PYCONVFAST_CACHE_DIR")
        else:
            monkeypatch.setenv("PYCONVFAST_CACHE_DIR", unset)
        expected = pathlib.Path(platformdirs.user_cache_dir("pyconvfast"), "tuning.json")
        assert pcf.tuning.cache_path() == expected
    assert isinstance(pcf.tuning.cache_path(), pathlib.Path)


def test_report_and_clear(cache_dir):
    cache = _cache.get_cache()
    cache.store("b", ENTRY)
    cache.store("a", {**ENTRY, "algorithm": "direct"})
    report = pcf.tuning.report()
    assert [entry["key"] for entry in report] == ["a", "b"]
    assert report[0]["algorithm"] == "direct" and report[1]["params"] == ENTRY["params"]
    assert set(report[1]) >= {"key", "algorithm", "params", "timings", "created"}
    report[1]["params"]["block"] = -1  # a copy: the cache is not changed through it
    assert cache.lookup("b")["params"]["block"] == 64
    pcf.tuning.clear()
    assert pcf.tuning.report() == []
    assert _cache.TuningCache().lookup("a") is None
    assert read_json(cache_dir / "tuning.json")["machines"] == {}


def test_export_load_round_trip(cache_dir, tmp_path, monkeypatch):
    cache = _cache.get_cache()
    cache.store("a", ENTRY)
    cache.store("b", {**ENTRY, "algorithm": "direct"})
    exported = tmp_path / "wisdom.json"
    pcf.tuning.export(exported)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "wisdom.json"]
    document = read_json(exported)
    (section,) = document["machines"].values()
    assert section["fingerprint"] == cache.fingerprint and set(section["entries"]) == {"a", "b"}

    monkeypatch.setenv("PYCONVFAST_CACHE_DIR", str(tmp_path / "elsewhere"))
    _cache.get_cache().store("b", ENTRY)  # replaced by the loaded one
    _cache.get_cache().store("c", ENTRY)  # kept
    assert pcf.tuning.load(str(exported)) == {"usable": 2, "other": 0}
    assert {e["key"]: e["algorithm"] for e in pcf.tuning.report()} == {
        "a": "im2col", "b": "direct", "c": "im2col"}
    assert set(_cache.TuningCache().entries()) == {"a", "b", "c"}  # in the file too


def test_load_keeps_other_machines_entries(cache_dir, tmp_path):
    fid, fingerprint = this_machine(cache_dir)
    other = {**fingerprint, "cpu_model": "another CPU"}
    good = {**ENTRY, "created": "2024-01-01T00:00:00+00:00"}
    document = {"schema": 1, "machines": {
        "any-name": {"fingerprint": other, "entries": {"x": good}},
        fid: {"fingerprint": fingerprint, "entries": {"mine": good}}}}
    path = tmp_path / "whole-cache.json"
    path.write_text(json.dumps(document))
    assert pcf.tuning.load(path) == {"usable": 1, "other": 1}
    assert [e["key"] for e in pcf.tuning.report()] == ["mine"]
    machines = read_json(cache_dir / "tuning.json")["machines"]
    assert machines[_cache.fingerprint_id(other)]["entries"] == {"x": good}


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[]", "top level is a JSON list"),
    (b'{"schema": 2, "machines": {}}', "schema 2"),
    (b'{"schema": 1}', "'machines' is not an object"),
    (b'{"schema": 1, "machines": {"m": {"entries": {}}}}', "no 'fingerprint'"),
    (b'{"schema": 1, "machines": {"m": {"fingerprint": {}, "entries": []}}}', "section"),
    (b'{"schema": 1, "machines": {"m": {"fingerprint": {}, "entries": '
     b'{"k": {"algorithm": 1}}}}}', "entry 'k': an entry's algorithm"),
])
def test_load_of_an_invalid_file_is_a_value_error(content, message, cache_dir, tmp_path):
    _cache.get_cache().store("kept", ENTRY)
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"cannot load .*bad.json: .*{message}"):
        pcf.tuning.load(path)
    assert [e["key"] for e in pcf.tuning.report()] == ["kept"]


def test_load_of_a_missing_file_is_an_os_error(cache_dir, tmp_path):
    with pytest.raises(FileNotFoundError):
        pcf.tuning.load(tmp_path / "missing.json")


def test_tuning_is_public():
    assert "tuning" in pcf.__all__
    assert pcf.tuning.__all__ == ["cache_path", "report", "clear", "export", "load"]


# ---------------------------------------------------------------------------------------------
# Cost


def test_lookup_hit_costs_microseconds(cache_dir):
    cache = _cache.get_cache()
    key = "conv2d|n1|c64|k64|g1|in56x56|w3x3|s1x1|d1x1|p1x1-1x1|zeros|float32|NCHW|flip0"
    cache.store(key, ENTRY)
    n = 10000
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            _cache.get_cache().lookup(key)
        best = min(best, (time.perf_counter() - start) / n)
    assert best < 10e-6, f"a lookup hit costs {best * 1e6:.2f} us"


def test_a_hit_never_touches_the_file_system(cache_dir, monkeypatch):
    cache = _cache.TuningCache()
    cache.store("k", ENTRY)
    _cache.TuningCache().lookup("k")

    def no_file_access(*args, **kwargs):
        raise AssertionError("a lookup hit touched the file system")

    monkeypatch.setattr(_cache.os, "stat", no_file_access)
    monkeypatch.setattr(_cache, "read_document", no_file_access)
    for _ in range(3):
        assert cache.lookup("k")["algorithm"] == "im2col"



# ---------------------------------------------------------------------------------------------
# A large cache: stores append to a journal, compacted now and then (issue 18, item 7)


def _large_cache(cache_dir, n_entries, fingerprint=None):
    """A ``tuning.json`` of ``n_entries`` entries ``old0 ...`` for this machine, written as one
    file, as every earlier version wrote it; returns its bytes."""
    fingerprint = fingerprint or _cache.machine_fingerprint()
    entries = {f"old{i}": {**ENTRY, "created": f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}"}
               for i in range(n_entries)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    _cache.write_atomically(cache_dir / "tuning.json", {"schema": 1, "machines": {
        _cache.fingerprint_id(fingerprint): {"fingerprint": fingerprint, "entries": entries}}})
    return (cache_dir / "tuning.json").read_bytes()


def _count_calls(monkeypatch, *names):
    """``{name: calls}`` of the ``_cache`` functions ``names``, counted from now on."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        def counted(*args, _name=name, _original=getattr(_cache, name), **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)
        # wherever the tuning package calls it from: the store, the files' module, or the
        # schema's own helpers
        for module in (_cache, _storage, schema):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counted)
    return calls


def _journal_keys(cache):
    return [json.loads(line)["key"] for line in cache.journal_path.read_bytes().splitlines()]


def test_a_store_into_a_large_cache_neither_reads_nor_rewrites_it(cache_dir, monkeypatch):
    snapshot = _large_cache(cache_dir, 2000)
    cache = _cache.TuningCache()
    assert cache.lookup("old1999")["algorithm"] == "im2col"  # an old one-file cache is read
    calls = _count_calls(monkeypatch, "read_document", "write_atomically", "validate_entry")
    with no_warnings():
        for i in range(20):
            cache.store(f"new{i}", ENTRY)
    # Before the journal: 20 reads and 20 rewrites of the whole file, and 2000 entries
    # validated three times a store.
    assert calls == {"read_document": 0, "write_atomically": 0, "validate_entry": 20}
    assert (cache_dir / "tuning.json").read_bytes() == snapshot
    assert _journal_keys(cache) == [f"new{i}" for i in range(20)]
    assert set(_cache.TuningCache().entries()) == {f"old{i}" for i in range(2000)} | {
        f"new{i}" for i in range(20)}


def test_a_miss_reads_and_validates_only_what_another_cache_appended(cache_dir, monkeypatch):
    _large_cache(cache_dir, 2000)
    reader, writer = _cache.TuningCache(), _cache.TuningCache()
    reader.lookup("old0"), writer.lookup("old0")
    for i in range(3):
        writer.store(f"new{i}", {**ENTRY, "algorithm": "direct"})
    calls = _count_calls(monkeypatch, "read_document", "validate_entry")
    assert reader.lookup("new2")["algorithm"] == "direct"
    assert reader.lookup("new0")["algorithm"] == "direct"  # a hit now
    assert reader.lookup("missing") is None  # a miss with nothing new: reads no line
    assert calls == {"read_document": 0, "validate_entry": 3}


STORE_AND_EXIT = """
import sys, warnings
warnings.simplefilter("error")
from pyconvfast.tuning import store as _cache
for key in sys.argv[1:]:
    _cache.get_cache().store(key, {"algorithm": "direct", "params": {}, "timings": {}})
"""


def test_the_journal_is_replayed_by_another_process(cache_dir):
    snapshot = _large_cache(cache_dir, 100)
    reader = _cache.TuningCache()
    assert reader.lookup("theirs0") is None  # loaded before the other process stores
    env = {**os.environ, "PYCONVFAST_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-c", STORE_AND_EXIT, "theirs0", "theirs1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (cache_dir / "tuning.json").read_bytes() == snapshot  # appended, not rewritten
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        "tuning.json", "tuning.json.journal", "tuning.json.lock"]
    with no_warnings():
        assert reader.lookup("theirs1")["algorithm"] == "direct"
        assert reader.lookup("theirs0")["algorithm"] == "direct"
        assert len(_cache.TuningCache().entries()) == 102


def test_compaction_keeps_every_entry_of_every_cache(cache_dir, monkeypatch):
    monkeypatch.setattr(_storage, "JOURNAL_FROM", 4)
    monkeypatch.setattr(_storage, "COMPACT_LINES", 5)
    _large_cache(cache_dir, 6)
    one, two, idle = _cache.TuningCache(), _cache.TuningCache(), _cache.TuningCache()
    idle.lookup("old0")  # read once, before any compaction
    rewrites = _count_calls(monkeypatch, "write_atomically")
    with no_warnings():
        for i in range(12):
            (one if i % 2 else two).store(f"new{i}", {**ENTRY, "params": {"i": i}})
    # 6 entries + 5 lines: compacted; 11 + 5: compacted; then 2 lines.
    assert rewrites == {"write_atomically": 2}
    (section,) = read_json(cache_dir / "tuning.json")["machines"].values()
    assert set(section["entries"]) == {f"old{i}" for i in range(6)} | {
        f"new{i}" for i in range(10)}
    assert _journal_keys(one) == ["new10", "new11"]
    expected = {f"old{i}" for i in range(6)} | {f"new{i}" for i in range(12)}
    for cache in (one, two, idle, _cache.TuningCache()):
        assert set(cache.entries()) == expected
        assert cache.lookup("new7")["params"] == {"i": 7}


def test_a_torn_last_line_is_ignored_and_cut_off_by_the_next_store(cache_dir):
    _large_cache(cache_dir, 100)
    cache = _cache.TuningCache()
    cache.store("whole", ENTRY)
    journal = cache.journal_path
    line = journal.read_bytes()
    with open(journal, "ab") as file:  # a process killed in the middle of its write
        file.write(line.replace(b'"whole"', b'"torn"')[: len(line) // 2])
    with no_warnings():
        fresh = _cache.TuningCache()
        assert fresh.lookup("whole")["algorithm"] == "im2col"
        assert fresh.lookup("torn") is None
        fresh.store("after", ENTRY)
        for reader in (cache, _cache.TuningCache()):
            assert reader.lookup("after")["algorithm"] == "im2col"
            assert reader.lookup("whole")["algorithm"] == "im2col"
            assert reader.lookup("torn") is None
    assert _journal_keys(cache) == ["whole", "after"]


def test_a_corrupt_journal_line_warns_once_and_only_it_is_skipped(cache_dir):
    _large_cache(cache_dir, 100)
    cache = _cache.TuningCache()
    cache.store("before", ENTRY)
    with open(cache.journal_path, "ab") as file:
        file.write(b"{ not json\n")
        file.write(b'{"entry": {"algorithm": 3}, "key": "bad", "machine": "%s"}\n'
                   % cache.fingerprint_id.encode())
    with pytest.warns(RuntimeWarning, match="ignoring a line of .*tuning.json.journal"):
        cache.store("after", ENTRY)  # catching up with the journal before appending to it
    with no_warnings():  # once a process
        fresh = _cache.TuningCache()
        assert fresh.lookup("before") is not None
        assert fresh.lookup("after") is not None and fresh.lookup("bad") is None
        fresh.clear()  # compacts: the bad lines are dropped with the rest
    assert not cache.journal_path.exists()


def test_the_cap_keeps_each_machines_newest_entries(cache_dir, monkeypatch):
    monkeypatch.setattr(_storage, "MAX_ENTRIES", 5)
    cache = _cache.TuningCache()
    days = [3, 8, 1, 6, 2, 7, 5, 4]
    for day in days:
        cache.store(f"day{day}", {**ENTRY, "created": f"2025-03-0{day}T12:00:00+00:00"})
    newest = {f"day{day}" for day in (4, 5, 6, 7, 8)}
    assert set(next(iter(read_json(cache_dir / "tuning.json")["machines"].values()))[
        "entries"]) == newest
    assert set(cache.entries()) == set(_cache.TuningCache().entries()) == newest


def test_the_cap_applies_at_compaction(cache_dir, monkeypatch):
    monkeypatch.setattr(_storage, "JOURNAL_FROM", 4)
    monkeypatch.setattr(_storage, "COMPACT_LINES", 3)
    monkeypatch.setattr(_storage, "MAX_ENTRIES", 6)
    _large_cache(cache_dir, 6)  # created in 2024
    cache = _cache.TuningCache()
    for i in range(3):  # created now: newer than every old entry
        cache.store(f"new{i}", ENTRY)
    assert not cache.journal_path.exists()
    assert set(_cache.TuningCache().entries()) == {"old3", "old4", "old5", "new0", "new1",
                                                   "new2"}


def test_clear_and_load_compact_the_journal(cache_dir, tmp_path):
    _large_cache(cache_dir, 100)
    cache = _cache.get_cache()
    cache.store("mine", ENTRY)
    exported = tmp_path / "wisdom.json"
    pcf.tuning.export(exported)
    cache.store("journaled", ENTRY)
    assert cache.journal_path.exists()
    pcf.tuning.clear()
    assert not cache.journal_path.exists()
    assert read_json(cache_dir / "tuning.json")["machines"] == {}
    assert _cache.TuningCache().entries() == {}  # nothing comes back from the journal
    assert pcf.tuning.load(exported) == {"usable": 101, "other": 0}
    assert len(_cache.TuningCache().entries()) == 101


def test_deleting_the_file_forgets_its_journal_too(cache_dir):
    _large_cache(cache_dir, 100)
    _cache.TuningCache().store("journaled", ENTRY)
    (cache_dir / "tuning.json").unlink()
    cache = _cache.TuningCache()
    with no_warnings():
        assert cache.lookup("journaled") is None
        cache.store("new", ENTRY)
    assert set(_cache.TuningCache().entries()) == {"new"}
    assert not cache.journal_path.exists()


def test_a_new_machine_in_a_large_file_gets_its_section_then_journals(cache_dir, monkeypatch):
    fid, fingerprint = this_machine(cache_dir)
    other = {**fingerprint, "cpu_model": "another CPU"}
    snapshot = _large_cache(cache_dir, 100, fingerprint=other)
    cache = _cache.TuningCache()
    cache.store("first", ENTRY)  # creates this machine's section in the snapshot
    machines = read_json(cache_dir / "tuning.json")["machines"]
    assert set(machines[fid]["entries"]) == {"first"}
    assert machines[_cache.fingerprint_id(other)] == json.loads(snapshot)["machines"][
        _cache.fingerprint_id(other)]
    cache.store("second", ENTRY)
    assert _journal_keys(cache) == ["second"]
    cache.clear()
    assert set(read_json(cache_dir / "tuning.json")["machines"]) == {
        _cache.fingerprint_id(other)}


WORKER_WITH_COMPACTION = WORKER.replace(
    "cache = _cache.get_cache()",
    "from pyconvfast.tuning import storage\nstorage.COMPACT_LINES = 7\ncache = _cache.get_cache()")


def test_four_processes_journaling_and_compacting_at_once_lose_nothing(cache_dir, tmp_path):
    _large_cache(cache_dir, 100)
    n_workers, count = 4, 15
    _run_workers_at_once(WORKER_WITH_COMPACTION, cache_dir, tmp_path, n_workers, count)
    expected = {f"conv2d|worker{w}|problem{i}" for w in range(n_workers) for i in range(count)}
    expected |= {f"old{i}" for i in range(100)}
    assert set(_cache.TuningCache().entries()) == expected
    assert not list(cache_dir.glob("*.tmp"))
