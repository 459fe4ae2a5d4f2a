"""Pure renderers: a parsed spec and its plan in, Kubernetes objects (dicts) out."""

from tfops.owned import owned_object_names
from tfops.render.common import Owner
from tfops.render.fleet import render_all

__all__ = ["Owner", "owned_object_names", "render_all"]
