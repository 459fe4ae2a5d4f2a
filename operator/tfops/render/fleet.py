"""Everything one ModelServer becomes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfops.model import Traffic
from tfops.plan import Plan
from tfops.promotion import Configured
from tfops.render.common import Owner
from tfops.render.configmap import render_config_files, render_configmap
from tfops.render.deployment import render_deployment
from tfops.render.hpa import render_hpa
from tfops.render.pdb import render_pdb
from tfops.render.service import render_service


def render_all(
    owner: Owner, plan: Plan, serving: Mapping[str, Configured] | None = None
) -> list[dict[str, Any]]:
    """The desired owned objects, in the order they should be applied (the
    ConfigMap before the Deployment that mounts it). `serving`: the versions and
    labels of models in the middle of a transition."""
    files = render_config_files(plan, serving)
    objects = [
        render_configmap(owner, files),
        render_deployment(owner, plan, files),
        render_service(owner),
        render_pdb(owner),
    ]
    if (plan.spec.traffic or Traffic()).headless_service:
        objects.append(render_service(owner, headless=True))
    if plan.spec.autoscaling is not None:
        objects.append(render_hpa(owner, plan.spec.autoscaling))
    return objects
