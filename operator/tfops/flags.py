"""The `tensorflow_model_server` flags tfops renders, each declared once with the
TF Serving version that introduced it.

TF Serving prints an unknown flag and keeps running (model_servers/main.cc), so
a flag the image's version does not know would silently do nothing: the plan
asks `knows()` before it relies on one, and `render()` refuses to emit one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The oldest TF Serving tfops renders for: --grpc_max_threads arrived in 2.5.
MINIMUM_SERVING_VERSION = (2, 5)


@dataclass(frozen=True)
class Flag:
    name: str
    since: tuple[int, int] = MINIMUM_SERVING_VERSION
    # Why tfops sets it, for a reader of the rendered Deployment's source.
    why: str = ""


FLAGS: dict[str, Flag] = {
    flag.name: flag
    for flag in (
        Flag("port", why="gRPC, 8500"),
        Flag(
            "rest_api_port", why="REST and Prometheus metrics, 8501 (TF Serving's default 0 = off)"
        ),
        Flag("model_config_file", why="models.config from the ConfigMap"),
        Flag(
            "model_config_file_poll_wait_seconds",
            why="re-read models.config: model and version changes without a restart",
        ),
        Flag(
            "file_system_poll_wait_seconds",
            why="how often version directories are listed (default 1 s: costly on gs://)",
        ),
        Flag(
            "allow_version_labels_for_unavailable_models",
            why="a pod starting with labels in its config would exit otherwise: labels are "
            "checked before any model has loaded (server_core.cc)",
        ),
        Flag("max_num_load_retries", why="a broken version reaches END before time-outs fire"),
        Flag("load_retry_interval_micros", why="paired with max_num_load_retries"),
        Flag("tensorflow_intra_op_parallelism", why="from the CPU limit, not the node's cores"),
        Flag("tensorflow_inter_op_parallelism", why="from the CPU limit, not the node's cores"),
        Flag("rest_api_num_threads", why="default 4 x the node's cores"),
        Flag("grpc_max_threads", (2, 5), "caps gRPC thread explosions under bursts"),
        Flag(
            "grpc_channel_arguments",
            why="grpc.max_connection_age_ms: clients reconnect and spread over new pods",
        ),
        Flag("enable_batching"),
        Flag("batching_parameters_file"),
        Flag("monitoring_config_file", why="Prometheus metrics on the REST port"),
        Flag("per_process_gpu_memory_fraction", why="the only GPU memory limit TF Serving has"),
        Flag("tensorflow_session_config_file", (2, 8), "gpu_options.allow_growth"),
        Flag("enable_grpc_healthcheck_service", (2, 15), "gRPC probes"),
    )
}


def knows(version: tuple[int, ...], name: str) -> bool:
    """Whether TF Serving `version` has the flag."""
    return version[:2] >= FLAGS[name].since


def render(version: tuple[int, ...], values: Iterable[tuple[str, object]]) -> list[str]:
    """`--name=value` for each pair. A flag not declared above, or one the version
    does not know, is a programming error: the plan must not have asked for it."""
    args = []
    for name, value in values:
        if name not in FLAGS or not knows(version, name):
            raise ValueError(f"--{name} is unknown to TF Serving {version}")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        args.append(f"--{name}={text}")
    return args
