"""The Event sender: posts off the caller's thread, bounded, stamped when sent,
and a refused post neither stops it nor reaches the reconcile."""

from __future__ import annotations

import threading
import time

from kubernetes.client.exceptions import ApiException

from tfops import metrics
from tfops.clients.events import Event, EventSender
from tfops.timefmt import now_iso

BODY = {
    "metadata": {"namespace": "ns", "name": "fleet", "uid": "u", "managedFields": [{}]},
    "status": {"models": [{"name": "m"}] * 100},
}


def test_send_returns_before_the_post_and_flush_waits_for_it() -> None:
    release, posted, stamps = threading.Event(), [], []

    def post(event: Event) -> None:
        release.wait(5)
        posted.append(event.reason)
        stamps.append(event.at)

    sender = EventSender(post)
    sender.send(BODY, kind="Normal", reason="Created", message="m")
    sent_at = now_iso()
    assert posted == []  # the caller did not wait for the round trip
    assert not sender.flush(timeout=0.1)
    time.sleep(1.1)
    release.set()
    assert sender.flush(timeout=5)
    # Stamped when the reconcile sent it, not when the API server took it.
    assert posted == ["Created"] and stamps[0] <= sent_at < now_iso()


def test_a_refused_post_is_logged_and_the_next_one_still_goes() -> None:
    posted = []

    def post(event: Event) -> None:
        # Only what the Event names is queued, not the whole ModelServer.
        assert event.body == {"metadata": {"namespace": "ns", "name": "fleet", "uid": "u"}}
        if event.reason == "Refused":
            raise ApiException(status=403, reason="Forbidden")
        posted.append(event.reason)

    sender = EventSender(post)
    sender.send(BODY, kind="Warning", reason="Refused", message="m")
    sender.send(BODY, kind="Normal", reason="Ready", message="m")
    assert sender.flush(timeout=5)
    assert posted == ["Ready"]


def test_a_full_backlog_drops_new_events_and_counts_them() -> None:
    release = threading.Event()
    sender = EventSender(lambda _event: release.wait(5), backlog=2)
    before = metrics.EVENTS_DROPPED._value.get()
    # Each sender thread holds one, the backlog two more: the rest are dropped.
    for index in range(10):
        sender.send(BODY, kind="Normal", reason=f"R{index}", message="m")
    dropped = metrics.EVENTS_DROPPED._value.get() - before
    release.set()
    assert sender.flush(timeout=5)
    assert 10 - 2 - 2 <= dropped <= 10 - 2
