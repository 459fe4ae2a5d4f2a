"""kopf's registrations (importing this package is what registers them): the
settings, and the ModelServer handlers, indexes and loops. Logic lives elsewhere."""

from tfops.handlers import modelserver, settings

__all__ = ["modelserver", "settings"]
