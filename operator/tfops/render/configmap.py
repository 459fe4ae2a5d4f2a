"""The ConfigMap TF Serving reads: models.config (polled, hot-reloaded) and the
start-up-only files batching.config, monitoring.config and session.config."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from google.protobuf import text_format

from tfops.model import ModelServerSpec
from tfops.owned import config_map_name
from tfops.plan import Plan
from tfops.promotion import Configured
from tfops.render.common import Owner, metadata
from tfops.render.protos import (
    BatchingParameters,
    ModelServerConfig,
    MonitoringConfig,
    SessionConfig,
)

MODELS_FILE = "models.config"
BATCHING_FILE = "batching.config"
MONITORING_FILE = "monitoring.config"
SESSION_FILE = "session.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# Read only when a pod starts: a change to any of these must roll the pods.
STARTUP_FILES = (BATCHING_FILE, MONITORING_FILE, SESSION_FILE)


def render_models_config(
    spec: ModelServerSpec, serving: Mapping[str, Configured] | None = None
) -> str:
    """models.config for the spec; `serving` overrides the versions and labels of
    models in the middle of a transition (tfops.promotion)."""
    config = ModelServerConfig()
    for model in spec.models:
        entry = config.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = model.base_path
        entry.model_platform = model.platform
        now = (serving or {}).get(model.name) or Configured.of(model)
        policy = model.policy()
        if now.versions is not None:
            entry.model_version_policy.specific.versions.extend(now.versions)
        elif policy.all:
            entry.model_version_policy.all.SetInParent()
        else:
            entry.model_version_policy.latest.num_versions = policy.latest or 1
        for label, version in now.labels:
            entry.version_labels[label] = version
    return str(text_format.MessageToString(config))


def parse_models_config(text: str) -> dict[str, Configured]:
    """The versions and labels a written models.config serves, by model; {} when the
    text does not parse (then nothing is assumed to be live)."""
    return dict(_parse_models_config(text))


@functools.lru_cache(maxsize=4096)
def _parse_models_config(text: str) -> dict[str, Configured]:
    # Cached: every reconcile reads the live models.config, and protobuf's text
    # parser was a tenth of the operator's CPU; callers get a copy.
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError:
        return {}
    served = {}
    for entry in config.model_config_list.config:
        policy = entry.model_version_policy
        specific = (
            policy.specific.versions if policy.WhichOneof("policy_choice") == "specific" else None
        )
        served[entry.name] = Configured(
            None if specific is None else tuple(sorted(specific)),
            tuple(sorted(entry.version_labels.items())),
        )
    return served


def render_batching_config(plan: Plan) -> str | None:
    batching = plan.spec.batching
    if batching is None:
        return None
    params = BatchingParameters()
    params.max_batch_size.value = batching.max_batch_size
    params.batch_timeout_micros.value = batching.batch_timeout_micros
    params.max_enqueued_batches.value = batching.max_enqueued_batches
    params.num_batch_threads.value = plan.batch_threads
    if batching.allowed_batch_sizes:
        params.allowed_batch_sizes.extend(batching.allowed_batch_sizes)
    params.pad_variable_length_inputs = batching.pad_variable_length_inputs
    if batching.large_batch_splitting is not None:
        params.enable_large_batch_splitting.value = True
        params.max_execution_batch_size.value = (
            batching.large_batch_splitting.max_execution_batch_size
        )
    return str(text_format.MessageToString(params))


def render_monitoring_config(plan: Plan) -> str | None:
    if not plan.prometheus:
        return None
    config = MonitoringConfig()
    config.prometheus_config.enable = True
    config.prometheus_config.path = PROMETHEUS_PATH
    return str(text_format.MessageToString(config))


def render_session_config(plan: Plan) -> str | None:
    if not plan.gpu_allow_growth:
        return None
    config = SessionConfig()
    config.gpu_options.allow_growth = True
    return str(text_format.MessageToString(config))


def render_config_files(
    plan: Plan, serving: Mapping[str, Configured] | None = None
) -> dict[str, str]:
    files = {
        MODELS_FILE: render_models_config(plan.spec, serving),
        BATCHING_FILE: render_batching_config(plan),
        MONITORING_FILE: render_monitoring_config(plan),
        SESSION_FILE: render_session_config(plan),
    }
    return {name: text for name, text in files.items() if text is not None}


def startup_config_hash(files: dict[str, str]) -> str:
    """Changes when a file TF Serving reads only at start changes (not models.config)."""
    digest = hashlib.sha256()
    for name in STARTUP_FILES:
        digest.update(f"{name}\0{files.get(name, '')}\0".encode())
    return digest.hexdigest()[:16]


def render_configmap(owner: Owner, files: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, config_map_name(owner.name)),
        "data": dict(sorted(files.items())),
    }
