"""The leak detector and restart policy: healthy shapes never restart, leaks are
restarted before 90% of the limit, and verdicts do not depend on units."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfops.memory.detector import Sample, judge, mann_kendall_z, theil_sen
from tfops.memory.replay import TraceError, read_trace, replay, write_trace
from tfops.testing.traces import Trace, healthy_traces, leak_traces


def _restart_at(samples: list[Sample]) -> float | None:
    return next((s.verdict.seconds for s in replay(samples) if s.restart), None)


def test_theil_sen_ignores_an_outlier_that_least_squares_would_follow() -> None:
    xs = [float(x) for x in range(10)]
    ys = [2.0 * x for x in xs]
    ys[5] = 1000.0
    assert theil_sen(xs, ys) == pytest.approx(2.0)


def test_mann_kendall_tells_a_trend_from_noise() -> None:
    assert mann_kendall_z([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) > 3
    assert abs(mann_kendall_z([5, 1, 4, 2, 6, 3, 5, 2, 4, 3])) < 1.5


def test_a_flat_pod_is_healthy_and_a_steady_climb_is_a_leak() -> None:
    gib = 2**30
    flat = [Sample(t, 2 * gib, 8 * gib) for t in range(15, 3600, 15)]
    climbing = [Sample(t, 2 * gib + t * 2**20, 8 * gib) for t in range(15, 3600, 15)]
    assert not judge(flat).leaking
    verdict = judge(climbing)
    assert verdict.leaking
    assert verdict.slope == pytest.approx(2**20, rel=0.01)
    assert verdict.seconds_to_limit == pytest.approx(
        (8 * gib - 2 * gib - 3585 * 2**20) / 2**20, rel=0.05
    )


# Derandomized: CI sees the same draws every run. Exploring new seeds is what
# bench/memory_guard.py and a local run without derandomize are for.
FAMILIES = sorted({t.family for t in healthy_traces(random.Random(0), 1)})


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6), family=st.sampled_from(FAMILIES))
def test_no_healthy_trace_family_triggers_a_restart(seed: int, family: str) -> None:
    traces = [t for t in healthy_traces(random.Random(seed), 1) if t.family == family]
    (trace,) = traces
    assert _restart_at(trace.samples) is None, f"{trace.name} (seed {seed}) was restarted"


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6), pick=st.integers(0, 5))
def test_leaks_are_restarted_before_reaching_90_percent_of_the_limit(seed: int, pick: int) -> None:
    trace: Trace = list(leak_traces(random.Random(seed), 1))[pick]
    restart = _restart_at(trace.samples)
    assert restart is not None, f"{trace.name} (seed {seed}) was never restarted"
    assert trace.oom_at is not None and restart < trace.oom_at
    at = next(s for s in trace.samples if s.seconds >= restart)
    assert at.working_set < 0.9 * at.limit


@settings(max_examples=10, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10**6),
    factor=st.sampled_from([2.0**-20, 2.0**-10, 8.0]),
    leak=st.booleans(),
)
def test_scaling_a_traces_units_does_not_change_any_verdict(
    seed: int, factor: float, leak: bool
) -> None:
    rng = random.Random(seed)
    source = leak_traces if leak else healthy_traces
    trace = rng.choice(list(source(random.Random(seed), 1)))
    scaled = [
        dataclasses.replace(s, working_set=s.working_set * factor, limit=s.limit * factor)
        for s in trace.samples
    ]
    original = [(s.verdict.leaking, s.restart) for s in replay(trace.samples)]
    assert [(s.verdict.leaking, s.restart) for s in replay(scaled)] == original


def test_a_trace_file_is_checked_line_by_line(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    write_trace(good, [Sample(15, 100, 1000), Sample(30, 110, 1000)])
    with good.open() as handle:
        assert [s.working_set for s in read_trace(handle)] == [100, 110]
    for text, message in [
        ("a,b,c\n1,2,3\n", "first line must be"),
        ("timestamp_seconds,working_set_bytes,limit_bytes\n1,2\n", ":2: expected three numbers"),
        ("timestamp_seconds,working_set_bytes,limit_bytes\n2,1,5\n1,1,5\n", "must increase"),
        ("timestamp_seconds,working_set_bytes,limit_bytes\n1,1,0\n", "limit > 0"),
        ("timestamp_seconds,working_set_bytes,limit_bytes\n", "no samples"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with bad.open() as handle, pytest.raises(TraceError, match=message):
            read_trace(handle, "bad.csv")


def test_guard_replay_cli_prints_the_timeline_and_json(tmp_path: Path) -> None:
    trace = next(t for t in leak_traces(random.Random(3), 1) if t.family.startswith("fast"))
    path = tmp_path / "fast.csv"
    write_trace(path, trace.samples)
    cli = [sys.executable, "-m", "tfops", "guard", "replay", str(path)]
    table = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    assert "LEAKING" in table and "RESTART" in table
    result = json.loads(
        subprocess.run([*cli, "--json"], capture_output=True, text=True, check=True).stdout
    )
    assert result["restart_at"] == _restart_at(trace.samples)
    assert result["verdicts"][-1]["restart"] is True
    assert {"seconds", "leaking", "slope", "seconds_to_limit"} <= set(result["verdicts"][0])
    later = json.loads(
        subprocess.run(
            [*cli, "--json", "--sustain-seconds", "600"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert later["restart_at"] is None or later["restart_at"] > result["restart_at"]

    missing = subprocess.run(
        [*cli[:-1], str(tmp_path / "nope.csv")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_a_pods_history_stays_bounded_and_keeps_each_minutes_floor() -> None:
    from tfops.memory.detector import DetectorSettings, History

    history = History(DetectorSettings())
    rng = random.Random(1)
    for step in range(1, 24 * 240 + 1):  # a day of 15-second samples
        history.add(Sample(step * 15.0, 1e9 + rng.uniform(0, 1e8), 4e9))
    samples = history.samples()
    # One hour raw (240), then one per minute back to the longest window (6 h).
    assert len(history) <= 240 + 5 * 60 + 2
    assert samples[0].seconds >= 24 * 3600 - 6 * 3600
    assert all(a.seconds < b.seconds for a, b in itertools.pairwise(samples))
    history.add(Sample(24 * 3600 + 15.0, 1.0, 4e9))  # a lower reading is always kept
    assert min(s.working_set for s in history.samples()) == 1.0
