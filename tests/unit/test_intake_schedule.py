"""The intake's source order: each source once its references are in, the longest chain first."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cqube_spark.intake import schedule

DEPS = {"school_master": set(), "diksha": set(), "student_attendance": {"school_master"},
        "crc": {"school_master", "inspection_master"}, "inspection_master": set()}


def _run(threads, costs, deps=DEPS, fail=None, pause=0.02):
    events, lock = [], threading.Lock()

    def load(name):
        with lock:
            events.append(("start", name))
        time.sleep(pause)
        if name == fail:
            raise RuntimeError(f"{name} broke")
        with lock:
            events.append(("end", name))
        return f"loaded {name}"
    with ThreadPoolExecutor(threads) as pool:
        return schedule.run(pool, threads, deps, costs, load), events


def test_critical_path_is_own_cost_plus_the_costliest_chain_waiting_for_it():
    paths = schedule.critical_paths(DEPS, {"school_master": 1, "diksha": 5, "student_attendance": 50,
                                           "crc": 3, "inspection_master": 1})
    assert paths == {"school_master": 51, "diksha": 5, "student_attendance": 50, "crc": 3,
                     "inspection_master": 4}


def test_a_small_master_a_big_file_waits_for_goes_before_a_bigger_file_nothing_waits_for():
    costs = {"school_master": 6, "diksha": 20, "student_attendance": 100, "crc": 7, "inspection_master": 6}
    results, events = _run(1, costs)
    starts = [n for kind, n in events if kind == "start"]
    assert starts == ["school_master", "student_attendance", "diksha", "inspection_master", "crc"]
    assert results == {n: f"loaded {n}" for n in DEPS}


def test_every_source_starts_after_the_sources_it_references_end():
    costs = {n: 6 for n in DEPS}
    _results, events = _run(2, costs)
    when = {(kind, n): i for i, (kind, n) in enumerate(events)}
    for name, refs in DEPS.items():
        assert all(when[("end", r)] < when[("start", name)] for r in refs), (name, events)
    assert max(sum(1 for k, _n in events[:i + 1] if k == "start") - sum(1 for k, _n in events[:i + 1] if k == "end")
               for i in range(len(events))) == 2


def test_sources_without_files_are_skipped_and_do_not_block_the_ones_that_reference_them():
    results, events = _run(2, {"student_attendance": 10, "crc": 5})
    assert sorted(results) == ["crc", "student_attendance"]
    assert {n for _k, n in events} == {"crc", "student_attendance"}


def test_a_failed_load_is_raised_and_nothing_waiting_for_it_starts():
    costs = {"school_master": 6, "student_attendance": 100}
    with pytest.raises(RuntimeError, match="school_master broke"):
        _run(1, costs, deps={"school_master": set(), "student_attendance": {"school_master"}}, fail="school_master")


def test_estimated_cost_grows_with_files_and_bytes():
    assert schedule.cost([]) == 0
    assert schedule.cost([0]) == schedule.FILE_SECONDS
    assert schedule.cost([0, 0]) == 2 * schedule.FILE_SECONDS
    assert schedule.cost([schedule.BYTES_PER_SECOND * 10]) == schedule.FILE_SECONDS + 10
