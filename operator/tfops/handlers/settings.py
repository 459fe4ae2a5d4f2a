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
    # Both in status (status.tfops), next to ours: one subresource, and no
    # annotation write on the object itself for every create and update.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name="tfops")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name="tfops")
    # After its own patch (status.tfops), kopf waits for the watch to show it before
    # handling the object again; with the default 5 s, a watch lagging under load
    # (hundreds of fleets created at once) made kopf run the creation again.
    settings.persistence.consistency_timeout = 60
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
    # Handlers are synchronous (the official client is): they run in this pool.
    settings.execution.max_workers = 16
    current = memo.config
    logger.info(
        "Started tfops with resync every %ss, model states from %s",
        current.resync_seconds,
        current.serving_url_template or "(not checked)",
    )
