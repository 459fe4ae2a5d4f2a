"""Leader election's rules on a fake Lease store and clocks we move by hand."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from tfops.leader import LeaderElector, LeaseUnavailable


class FakeLeases:
    """A Lease store with the API server's optimistic concurrency."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise LeaseUnavailable("connection refused")

    def read(self) -> dict[str, Any] | None:
        self._check()
        return copy.deepcopy(self.lease)

    def create(self, lease: dict[str, Any]) -> bool:
        self._check()
        if self.lease is not None:
            return False
        self.version += 1
        self.lease = {"metadata": {"resourceVersion": str(self.version)}, "spec": lease["spec"]}
        return True

    def replace(self, lease: dict[str, Any]) -> bool:
        self._check()
        assert self.lease is not None
        if lease["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            return False
        self.version += 1
        self.lease = {"metadata": {"resourceVersion": str(self.version)}, "spec": lease["spec"]}
        return True

    @property
    def holder(self) -> str | None:
        return None if self.lease is None else self.lease["spec"]["holderIdentity"]


class StaleRead:
    """A store whose read returned a record someone has since overwritten."""

    def __init__(self, store: FakeLeases, snapshot: dict[str, Any] | None) -> None:
        self.store, self.snapshot = store, snapshot

    def read(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.snapshot)

    def create(self, lease: dict[str, Any]) -> bool:
        return self.store.create(lease)

    def replace(self, lease: dict[str, Any]) -> bool:
        return self.store.replace(lease)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime.datetime:
        # A wall clock far off from the other replica's: it must not matter.
        return datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            seconds=self.now
        )


def _elector(store: FakeLeases, identity: str, clock: Clock, lost: list[str]) -> LeaderElector:
    return LeaderElector(
        store,
        identity=identity,
        lease_seconds=15,
        monotonic=clock.monotonic,
        wall_clock=clock.wall,
        on_lost=lambda: lost.append(identity),
    )


@pytest.fixture
def store() -> FakeLeases:
    return FakeLeases()


def test_the_first_replica_creates_the_lease_and_renews_it(store: FakeLeases) -> None:
    clock, lost = Clock(), []
    a = _elector(store, "a", clock, lost)
    assert a.try_acquire_or_renew()
    assert store.holder == "a" and store.lease["spec"]["leaseTransitions"] == 0  # type: ignore[index]
    acquired = store.lease["spec"]["acquireTime"]  # type: ignore[index]
    clock.now += 5
    assert a.try_acquire_or_renew()
    assert store.lease["spec"]["acquireTime"] == acquired  # type: ignore[index]
    assert store.lease["spec"]["renewTime"] != acquired  # type: ignore[index]


def test_a_standby_waits_a_whole_duration_of_an_unchanged_record(store: FakeLeases) -> None:
    clock, lost = Clock(), []
    a, b = _elector(store, "a", clock, lost), _elector(store, "b", clock, lost)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b starts timing now
    clock.now += 14
    assert not b.try_acquire_or_renew()
    clock.now += 2  # 16 s without a renewal, on b's own clock
    assert b.try_acquire_or_renew()
    assert store.holder == "b" and store.lease["spec"]["leaseTransitions"] == 1  # type: ignore[index]


def test_a_renewing_leader_is_never_taken_over(store: FakeLeases) -> None:
    clock, lost = Clock(), []
    a, b = _elector(store, "a", clock, lost), _elector(store, "b", clock, lost)
    assert a.try_acquire_or_renew()
    for _ in range(10):
        clock.now += 5
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert store.holder == "a"


def test_two_standbys_cannot_both_win(store: FakeLeases) -> None:
    clock, lost = Clock(), []
    a = _elector(store, "a", clock, lost)
    b, c = _elector(store, "b", clock, lost), _elector(store, "c", clock, lost)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.now += 16
    stale = store.read()
    assert b.try_acquire_or_renew()
    # c read the same record before b wrote: its write carries the old version.
    c.store = StaleRead(store, stale)
    assert not c.try_acquire_or_renew()
    assert store.holder == "b"


def test_a_leader_that_cannot_renew_for_a_duration_stops(store: FakeLeases) -> None:
    clock, lost = Clock(), []
    a = _elector(store, "a", clock, lost)
    assert a.try_acquire_or_renew()
    last = clock.now
    store.down = True
    clock.now += 10
    assert a.renew(last) == last  # still within the duration: retry
    clock.now += 6
    assert a.renew(last) is None  # 16 s without a renewal: lost


def test_a_leader_whose_lease_was_taken_stops(store: FakeLeases) -> None:
    clock, lost = Clock(), []
    a, b = _elector(store, "a", clock, lost), _elector(store, "b", clock, lost)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.now += 16
    assert b.try_acquire_or_renew()
    assert a.renew(clock.now) is None


def test_acquire_waits_out_an_unreachable_store(store: FakeLeases) -> None:
    clock, lost = Clock(), []
    a = _elector(store, "a", clock, lost)
    store.down = True
    with pytest.raises(LeaseUnavailable):
        a.try_acquire_or_renew()
    store.down = False
    assert a.try_acquire_or_renew()
