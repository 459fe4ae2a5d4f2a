"""Where the memory guard reads serving pods' working sets. The detector does not
care: both sources give (reading time, working set) per pod.

- metrics.k8s.io (metrics-server): the current value only, in every cluster.
- Prometheus: `container_memory_working_set_bytes` from the kubelet's resource
  metrics or cAdvisor, for clusters that scrape them. It also has the past: a
  pod first seen by this operator process (a new pod, or every pod after an
  operator restart) gets its history from a range query, so a leak already under
  way is judged at once instead of after a window refills.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from tfops.clients import kube
from tfops.quantity import parse_bytes
from tfops.render.common import CONTAINER_NAME, OWNER_LABEL
from tfops.timefmt import epoch

METRIC = "container_memory_working_set_bytes"
# Prometheus answers at most 11,000 points per series in a range query.
MAX_POINTS = 10_000


@dataclass(frozen=True)
class Reading:
    stamp: str  # identifies the reading (a new one per scrape)
    epoch: float
    working_set: float


class SourceError(RuntimeError):
    """The source did not answer; the message says why."""


class Source(Protocol):
    # Whether history() can answer (a new watch is then filled from the past).
    has_history: bool

    def readings(self, namespace: str) -> dict[str, Reading]:
        """The latest working set of every serving pod in the namespace, by pod name
        (pods of other workloads may be among them: callers pick theirs by name)."""
        ...

    def history(
        self, namespace: str, pod: str, start: float, end: float, step: float
    ) -> list[Reading]: ...


class MetricsServerSource:
    """metrics.k8s.io PodMetrics: no history."""

    has_history = False

    def __init__(self, api: Any) -> None:
        self.api = api

    def readings(self, namespace: str) -> dict[str, Reading]:
        found = {}
        for item in kube.list_pod_metrics(self.api, namespace, OWNER_LABEL):
            for container in item.get("containers") or []:
                if container.get("name") == CONTAINER_NAME:
                    stamp = item["timestamp"]
                    found[item["metadata"]["name"]] = Reading(
                        stamp, epoch(stamp), float(parse_bytes(container["usage"]["memory"]))
                    )
        return found

    def history(
        self, namespace: str, pod: str, start: float, end: float, step: float
    ) -> list[Reading]:
        return []


def prometheus_selector(namespace: str, pod: str) -> str:
    def quoted(value: str) -> str:
        return json.dumps(value)  # a PromQL string literal, escaped

    return f"{{namespace={quoted(namespace)},pod={pod},container={quoted(CONTAINER_NAME)}}}"


class PrometheusSource:
    """Prometheus' HTTP API (instant and range queries)."""

    has_history = True

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _query(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                detail = json.loads(error.read()).get("error", "")
            except ValueError:
                detail = ""
            raise SourceError(f"Prometheus answered {error.code}: {detail}") from error
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise SourceError(f"Prometheus at {self.base_url} did not answer: {error}") from error
        if body.get("status") != "success":
            raise SourceError(f"Prometheus query failed: {body.get('error', body)}")
        return list(body["data"]["result"])

    def readings(self, namespace: str) -> dict[str, Reading]:
        selector = prometheus_selector(namespace, '~".+"')
        values = self._query("/api/v1/query", {"query": f"max by (pod) ({METRIC}{selector})"})
        # An instant query answers at its own time: ask when each sample was scraped,
        # so one scrape counts once however often we ask.
        scraped = {
            series["metric"]["pod"]: float(series["value"][1])
            for series in self._query(
                "/api/v1/query", {"query": f"max by (pod) (timestamp({METRIC}{selector}))"}
            )
        }
        found = {}
        for series in values:
            pod = series["metric"]["pod"]
            when = scraped.get(pod, float(series["value"][0]))
            found[pod] = Reading(f"{when:.3f}", when, float(series["value"][1]))
        return found

    def history(
        self, namespace: str, pod: str, start: float, end: float, step: float
    ) -> list[Reading]:
        step = max(step, (end - start) / MAX_POINTS, 1.0)
        if end - start < step:
            return []
        query = f"max({METRIC}{prometheus_selector(namespace, json.dumps(pod))})"
        result = self._query(
            "/api/v1/query_range",
            {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"},
        )
        if not result:
            return []
        return [Reading(f"{float(t):.3f}", float(t), float(v)) for t, v in result[0]["values"]]
