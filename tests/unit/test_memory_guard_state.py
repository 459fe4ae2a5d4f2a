"""The guard's per-pod state: OOM kills as evidence, and checkpoints that carry a
pod's history across an operator restart."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any, cast

from tfops.clients.memory_sources import Reading
from tfops.guard_loop import MemoryGuardLoop
from tfops.memory.detector import DetectorSettings, History
from tfops.memory.policy import LeakTracker, PolicySettings, restart_decision
from tfops.memory.watch import FleetWatch, PodWatch, checkpoint_pod, restore_pod
from tfops.model import MemoryGuard
from tfops.render.common import CONTAINER_NAME
from tfops.timefmt import iso

MIB = 2**20
LIMIT = 4096 * MIB
START = 1_700_000_000.0
DETECTOR = DetectorSettings()
POLICY = PolicySettings()


def _watch(uid: str = "uid-1", started_at: float = START) -> PodWatch:
    return PodWatch(uid, started_at, DETECTOR, LeakTracker(POLICY), History(DETECTOR))


def _feed(
    watch: PodWatch, *, seconds: float, mib_per_minute: float, begin: float = 0.0
) -> list[bool]:
    """Readings every 15 s, from `begin` to `seconds` after the process started,
    of a process growing linearly (with a small sawtooth) from 500 MiB."""
    wants = []
    t = begin
    while t <= seconds:
        working_set = (500 + mib_per_minute * t / 60 + 20 * ((t // 15) % 4)) * MIB
        epoch = watch.started_at + t
        wants.append(watch.add(f"{epoch:.0f}", epoch, working_set, LIMIT))
        t += 15.0
    return wants


def test_a_checkpoint_restores_the_history_the_verdict_and_the_sustain_clock() -> None:
    watch = _feed_leak_for(40 * 60)
    assert watch.verdict is not None and watch.verdict.leaking
    text = checkpoint_pod(watch)
    restored = restore_pod(text, uid="uid-1", detector=DETECTOR, policy=POLICY)
    assert restored is not None and restored.verdict is not None
    assert restored.verdict.leaking
    assert abs(restored.verdict.slope - watch.verdict.slope) < 0.1 * watch.verdict.slope
    assert restored.tracker.leaking_since == watch.tracker.leaking_since
    watch.tracker.near_since = watch.tracker.last_leaking  # projected near since then
    again = restore_pod(checkpoint_pod(watch), uid="uid-1", detector=DETECTOR, policy=POLICY)
    assert again is not None and again.tracker.near_since == watch.tracker.last_leaking
    assert restored.last_reading == watch.last_reading
    # The next reading is judged on the restored history, not on an empty one.
    epoch = START + 40 * 60 + 15
    restored.add("next", epoch, 500 * MIB + 30 * MIB * (40 * 60 + 15) / 60, LIMIT)
    assert restored.verdict.leaking


def _feed_leak_for(seconds: float) -> PodWatch:
    watch = _watch()
    _feed(watch, seconds=seconds, mib_per_minute=30)
    return watch


def test_a_checkpoint_of_six_hours_stays_small() -> None:
    watch = _watch()
    _feed(watch, seconds=6 * 3600, mib_per_minute=0.05)
    text = checkpoint_pod(watch)
    # ~400 samples: every minute's floor, the last ten minutes raw.
    assert len(json.loads(text)["samples"]) < 420
    assert len(text) < 12_000


def test_a_checkpoint_of_another_pod_or_a_damaged_one_is_ignored() -> None:
    text = checkpoint_pod(_feed_leak_for(10 * 60))
    assert restore_pod(text, uid="another-uid", detector=DETECTOR, policy=POLICY) is None
    for damaged in ("", "{", '{"uid": "uid-1"}', '{"uid": "uid-1", "samples": 3, "limit": 1}'):
        assert restore_pod(damaged, uid="uid-1", detector=DETECTOR, policy=POLICY) is None


def _oom_cycle(watch: PodWatch, mib_per_minute: float, restart_count: int) -> None:
    _feed(watch, seconds=20 * 60, mib_per_minute=mib_per_minute)
    watch.process_restarted(
        restart_count=restart_count, oom_killed=True, started_at=watch.started_at + 20 * 60 + 5
    )


def test_two_oom_kills_at_the_same_growth_make_a_leak_at_once() -> None:
    watch = _watch()
    _oom_cycle(watch, 100, 1)
    _oom_cycle(watch, 110, 2)
    assert [round(s * 60 / MIB) for s in watch.oom_slopes] == [100, 110]
    # The new process: nothing to judge during its warm-up...
    _feed(watch, seconds=DETECTOR.warmup_seconds - 15, mib_per_minute=100)
    assert watch.verdict is not None and not watch.verdict.leaking
    # ...then the known growth projects its OOM without waiting for a window.
    _feed(
        watch,
        seconds=DETECTOR.warmup_seconds + 30,
        mib_per_minute=100,
        begin=DETECTOR.warmup_seconds,
    )
    assert watch.verdict is not None and watch.verdict.leaking
    assert "OOM-killed 2 times" in watch.verdict.reason
    assert watch.verdict.seconds_to_limit is not None
    assert watch.verdict.seconds_to_limit < 40 * 60


def test_oom_kills_at_different_growth_or_plain_restarts_are_not_a_leak() -> None:
    different = _watch()
    _oom_cycle(different, 100, 1)
    _oom_cycle(different, 10, 2)
    _feed(different, seconds=DETECTOR.warmup_seconds + 30, mib_per_minute=0)
    assert different.verdict is not None and not different.verdict.leaking

    plain = _watch()
    _feed(plain, seconds=20 * 60, mib_per_minute=0)
    plain.process_restarted(restart_count=1, oom_killed=False, started_at=START + 1300)
    _feed(plain, seconds=20 * 60, mib_per_minute=0)
    plain.process_restarted(restart_count=2, oom_killed=False, started_at=START + 2600)
    assert plain.oom_slopes == []


def test_a_restarted_process_starts_a_fresh_history_and_sustain_clock() -> None:
    watch = _feed_leak_for(40 * 60)
    assert watch.tracker.leaking_since is not None
    watch.process_restarted(restart_count=1, oom_killed=False, started_at=START + 2500)
    assert len(watch.history) == 0 and watch.tracker.leaking_since is None


def test_only_the_cap_and_the_back_off_count_as_held() -> None:
    common = {"pod": "a", "now": 10_000.0, "desired": 2, "ready_pods": {"a", "b"}}
    guard = MemoryGuard(max_restarts_per_hour=1)
    capped = restart_decision(guard=guard, pod_ready=True, restarts=[9000.0], **common)
    starting = restart_decision(guard=guard, pod_ready=False, restarts=[], **common)
    assert capped.held and capped.action is None
    assert not starting.held and starting.action is None


def test_prometheus_selectors_quote_names_as_promql_strings() -> None:
    from tfops.clients.memory_sources import prometheus_selector

    assert prometheus_selector("ml", '"search-abc-x"') == (
        '{namespace="ml",pod="search-abc-x",container="tensorflow-serving"}'
    )
    # A hostile namespace stays a string literal.
    assert '\\"' in prometheus_selector('a"b', '"p"')


def test_a_load_is_not_a_leak_and_its_offset_survives_a_checkpoint() -> None:
    watch = _watch()
    restarts = []
    for step in range(1, 4 * 240):  # 4 hours at 15 s
        t = step * 15.0
        loading = 1800 <= t < 3000
        working_set = (1000 + 2000 * min(1.0, max(0.0, (t - 1800) / 1200))) * MIB
        epoch = START + t
        restarts.append(watch.add(f"{epoch:.0f}", epoch, working_set, LIMIT, loading=loading))
        if t == 3600:
            assert watch.loading is not None and watch.loading.offset > 1500 * MIB
    assert not any(restarts)
    assert watch.verdict is not None and not watch.verdict.leaking
    restored = restore_pod(checkpoint_pod(watch), uid="uid-1", detector=DETECTOR, policy=POLICY)
    assert restored is not None and restored.loading is not None
    assert restored.loading.offset == watch.loading.offset  # type: ignore[union-attr]


class _SlowPast:
    """A memory source whose past answers only when the test lets it (a slow
    Prometheus range query)."""

    has_history = True

    def __init__(self, past: list[Reading]) -> None:
        self.past = past
        self.answer = threading.Event()

    def readings(self, namespace: str) -> dict[str, Reading]:
        return {}

    def history(
        self, namespace: str, pod: str, start: float, end: float, step: float
    ) -> list[Reading]:
        assert self.answer.wait(10)
        return [r for r in self.past if start <= r.epoch <= end]


def _pod(started: float, restart_count: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": "p-1", "namespace": "ns", "uid": "uid-1"},
        "status": {
            "containerStatuses": [
                {
                    "name": CONTAINER_NAME,
                    "restartCount": restart_count,
                    "state": {"running": {"startedAt": iso(started)}},
                }
            ]
        },
    }


class _NoPast(_SlowPast):
    has_history = False


def test_a_saved_watch_of_a_container_that_restarted_since_starts_afresh() -> None:
    """The container restarted while no operator ran: its saved history is of the
    old process and must not be judged with the new one's samples."""
    saved = _feed_leak_for(40 * 60)
    fleet = FleetWatch(saved={"p-1": checkpoint_pod(saved)})
    loop = MemoryGuardLoop(cast(Any, None), cast(Any, None), _NoPast([]))
    restarted = float(int(time.time()) - 60)  # ISO times have whole seconds
    try:
        watch = loop.watch_pod(fleet, _pod(restarted, restart_count=1), MemoryGuard(), LIMIT)
    finally:
        loop.stop()
    assert watch is not None and fleet.pods["p-1"] is watch
    assert watch.restart_count == 1 and watch.started_at == restarted
    assert len(watch.history) == 0 and watch.tracker.leaking_since is None


def test_a_slow_backfill_holds_up_neither_sampling_nor_live_readings() -> None:
    now = time.time()
    started = now - 3600
    pod = _pod(started)
    past = [Reading(f"{t:.0f}", t, 1000 * MIB) for t in (started + 15 * i for i in range(1, 235))]
    source = _SlowPast(past)
    loop = MemoryGuardLoop(cast(Any, None), cast(Any, None), source)
    fleet = FleetWatch()
    try:
        # The past has not come: the watch is not ready and the live reading waits.
        assert loop.watch_pod(fleet, pod, MemoryGuard(), LIMIT) is None
        fleet.filling["p-1"].wait(f"{now:.0f}", now, 1100 * MIB, LIMIT, False)
        source.answer.set()
        fleet.filling["p-1"].done.result(timeout=10)
        watch = loop.watch_pod(fleet, pod, MemoryGuard(), LIMIT)
    finally:
        loop.stop()
    assert watch is not None and not fleet.filling and fleet.pods["p-1"] is watch
    samples = watch.history.samples()
    # The past first, then the reading that waited, in time order.
    assert len(samples) >= len(past) // 2
    assert samples[-1].working_set == 1100 * MIB
    assert all(a.seconds < b.seconds for a, b in itertools.pairwise(samples))
