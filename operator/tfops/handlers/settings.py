"""kopf's settings, set at start-up under our own names: nothing else lives here."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from tfops.model import GROUP
from tfops.state import OperatorState


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: Any, memo: OperatorState, **_: Any) -> None:
    """Set every kopf setting we rely on explicitly, under our own names."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Watches have silently stopped for kopf users (kopf#585, #955): reconnect
    # on the server's side well before any proxy idles the stream out.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.inactivity_timeout = 600
    settings.networking.request_timeout = 60
    # tfops posts its own Events (one per action, with the fix in the message);
    # kopf turns only handler errors from the log into Events.
    settings.posting.level = logging.ERROR
    # The index and event handlers only store a body or queue a fleet (reconciles
    # run on the resync's workers): a few threads are plenty.
    settings.execution.max_workers = 4
    current = memo.config
    logger.info(
        "Started tfops with resync every %ss, model states from %s",
        current.resync_seconds,
        current.serving_url_template or "(not checked)",
    )
