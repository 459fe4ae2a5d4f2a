"""The only module that writes to the Kubernetes API (kopf posts events and status)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tfops import __version__, metrics
from tfops.clients.events import EventSender
from tfops.leader import LeaseUnavailable
from tfops.model import GROUP, KIND, PLURAL, VERSION
from tfops.owned import BY_KIND

FIELD_MANAGER = "tfops"


class NoCluster(RuntimeError):
    """No usable kubeconfig or service account, or the API server does not answer;
    the message says which and what to do."""


IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


# Connections kept open to the apiserver. The resync, apply and handler threads
# share one client; a pool smaller than they are discards connections and pays a
# TLS handshake per request (the client's default is 5 per core).
API_CONNECTIONS = 64


class CountingApiClient(client.ApiClient):  # type: ignore[misc]
    """The official client, counting its requests by method
    (tfops_api_requests_total): what each resync costs the apiserver."""

    def call_api(self, method: str, *args: Any, **kwargs: Any) -> Any:
        metrics.API_REQUESTS.labels(method.upper()).inc()
        return super().call_api(method, *args, **kwargs)


def api_client() -> client.ApiClient:
    """A client from the in-cluster service account, else from the kubeconfig
    ($KUBECONFIG or ~/.kube/config). Raises NoCluster when neither is usable."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except Exception as error:  # the loader raises whatever the file provokes
            where = os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise NoCluster(
                f"no usable kubeconfig at {where} ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else 'unreadable'}); set KUBECONFIG "
                "to a valid kubeconfig, or run inside a cluster"
            ) from error
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = API_CONNECTIONS
    api = CountingApiClient(configuration)
    # Names us in audit logs and apiserver metrics.
    api.user_agent = f"tfops/{__version__}"
    return api


def default_namespace() -> str:
    """The namespace of the service account, else of the kubeconfig's context."""
    try:
        return Path(IN_CLUSTER_NAMESPACE).read_text().strip()
    except OSError:
        pass
    try:
        _, context = config.list_kube_config_contexts()
    except Exception:  # any unreadable kubeconfig means "default"
        return "default"
    return str((context or {}).get("context", {}).get("namespace") or "default")


def check_reachable(api: client.ApiClient, timeout: float = 10.0) -> str:
    """The API server's version, or NoCluster saying why it did not answer."""
    host = api.configuration.host
    quiet = logging.getLogger("urllib3")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its retries would each log a warning first
    try:
        request = api.param_serialize(method="GET", resource_path="/version")
        response = api.call_api(*request, _request_timeout=timeout)
        response.read()
        return str(json.loads(response.data).get("gitVersion", "unknown"))
    except ApiException as error:
        raise NoCluster(
            f"the API server at {host} answered HTTP {error.status}: {error_message(error)}"
        ) from error
    except Exception as error:  # urllib3 and ssl errors alike: it did not answer
        raise NoCluster(f"the API server at {host} did not answer: {_reason(error)}") from error
    finally:
        quiet.setLevel(level)


def _reason(error: BaseException) -> str:
    """The innermost cause of a connection failure, in one line."""
    while getattr(error, "reason", None) is not None and error.reason is not error:
        nested = error.reason
        if not isinstance(nested, BaseException):
            break
        error = nested
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    owned = BY_KIND[kind]
    path = f"{owned.api_prefix}/namespaces/{namespace}/{owned.plural}"
    return f"{path}/{name}" if name else path


def _call(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> Any:
    request = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request, _request_timeout=30)
    response.read()
    return api.response_deserialize(response, {"2XX": "object"}).data


def apply(api: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply as the `tfops` field manager, taking over conflicting
    fields: the ModelServer is the source of truth for what we render."""
    meta = obj["metadata"]
    return dict(
        _call(
            api,
            "PATCH",
            _path(obj["kind"], meta["namespace"], meta["name"]),
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
    )


def read(api: client.ApiClient, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One object, or None when there is none."""
    try:
        return dict(_call(api, "GET", _path(kind, namespace, name)))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def hand_over_field(api: client.ApiClient, obj: dict[str, Any], manager: str) -> None:
    """Apply `obj` (a partial object) under another field manager, so that field
    survives when tfops stops applying it (SSA would otherwise delete it)."""
    meta = obj["metadata"]
    _call(
        api,
        "PATCH",
        _path(obj["kind"], meta["namespace"], meta["name"]),
        body=obj,
        query=[("fieldManager", manager), ("force", "true")],
        content_type="application/apply-patch+yaml",
    )


def patch_status(api: client.ApiClient, namespace: str, name: str, changes: dict[str, Any]) -> int:
    """Merge-patch a ModelServer's status subresource (None deletes a key); returns
    its new resourceVersion (0 when the answer has none)."""
    patched = _call(
        api,
        "PATCH",
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status",
        body={"status": changes},
        content_type="application/merge-patch+json",
    )
    return _version_of(patched)


def _version_of(obj: Any) -> int:
    """An answer's resourceVersion, 0 when it has none."""
    version = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(version) if version.isdigit() else 0


def post_event(
    api: client.ApiClient,
    body: dict[str, Any],
    *,
    kind: str,
    reason: str,
    message: str,
    at: str,
) -> None:
    """An Event on the ModelServer, as `kubectl describe ms` shows them; `at`: when
    it happened."""
    meta = body["metadata"]
    _call(
        api,
        "POST",
        f"/api/v1/namespaces/{meta['namespace']}/events",
        body={
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
        },
    )


def list_pod_metrics(api: client.ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    """PodMetrics (metrics.k8s.io, served by metrics-server) of matching pods."""
    reply = _call(
        api,
        "GET",
        f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
        query=[("labelSelector", selector)],
    )
    return list(reply.get("items") or [])


def evict(api: client.ApiClient, namespace: str, pod: str) -> bool:
    """Evict through the Eviction API, so PodDisruptionBudgets hold. False when a
    budget refused it for now (HTTP 429)."""
    try:
        _call(
            api,
            "POST",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
            body={
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": pod, "namespace": namespace},
            },
        )
    except ApiException as error:
        if error.status == 429:
            return False
        raise
    return True


def rollout_restart(api: client.ApiClient, namespace: str, deployment: str, when: str) -> None:
    """What `kubectl rollout restart` does, under our own field manager: new pods
    come up (maxSurge) before old ones go (maxUnavailable 0)."""
    hand_over_field(
        api,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": deployment, "namespace": namespace},
            "spec": {"template": {"metadata": {"annotations": {f"{GROUP}/restarted-at": when}}}},
        },
        f"{FIELD_MANAGER}-memory-guard",
    )


def delete(api: client.ApiClient, kind: str, namespace: str, name: str) -> bool:
    """Delete if present; False when it was already gone."""
    try:
        _call(api, "DELETE", _path(kind, namespace, name))
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def error_message(error: ApiException) -> str:
    """The apiserver's own message from an error response."""
    try:
        return str(json.loads(error.body or "{}").get("message", error.body))
    except (ValueError, AttributeError):
        return str(error.body)[:500]


def is_conflict_or_transient(error: ApiException) -> bool:
    return error.status in (409, 429, 500, 502, 503, 504)


class Writer:
    """A reconcile's object writes, to the API server (tfops.reconcile.Writer)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return apply(self.api, obj)

    def hand_over(self, obj: dict[str, Any], manager: str) -> None:
        hand_over_field(self.api, obj, manager)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        return delete(self.api, kind, namespace, name)

    def set_pod_condition(self, namespace: str, pod: str, condition: dict[str, Any]) -> int:
        # A strategic merge patch: conditions merge by type, the kubelet's stay.
        patched = _call(
            self.api,
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/status",
            body={"status": {"conditions": [condition]}},
            content_type="application/strategic-merge-patch+json",
        )
        return _version_of(patched)


class ApiSink:
    """A reconcile's status changes, written through the API, and its Events,
    queued on the operator's EventSender."""

    def __init__(self, api: client.ApiClient, body: dict[str, Any], events: EventSender) -> None:
        self.api, self.body, self.events = api, body, events

    def event(self, kind: str, reason: str, message: str) -> None:
        self.events.send(self.body, kind=kind, reason=reason, message=message)

    def status(self, changes: dict[str, Any]) -> int:
        meta = self.body["metadata"]
        return patch_status(self.api, meta["namespace"], meta["name"], changes)


class Leases:
    """One coordination.k8s.io Lease, as tfops.leader's LeaseStore."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def _body(self, lease: dict[str, Any]) -> dict[str, Any]:
        metadata = {"name": self.name, "namespace": self.namespace}
        metadata.update({k: v for k, v in (lease.get("metadata") or {}).items() if v})
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": lease["spec"],
        }

    def _write(self, method: str, path: str, lease: dict[str, Any]) -> bool:
        try:
            _call(self.api, method, path, body=self._body(lease))
        except ApiException as error:
            if error.status == 409:
                return False
            raise LeaseUnavailable(f"HTTP {error.status}: {error_message(error)}") from error
        except Exception as error:  # urllib3 and ssl errors alike: it did not answer
            raise LeaseUnavailable(_reason(error)) from error
        return True

    def read(self) -> dict[str, Any] | None:
        try:
            return dict(_call(self.api, "GET", f"{self.path}/{self.name}"))
        except ApiException as error:
            if error.status == 404:
                return None
            raise LeaseUnavailable(f"HTTP {error.status}: {error_message(error)}") from error
        except Exception as error:
            raise LeaseUnavailable(_reason(error)) from error

    def create(self, lease: dict[str, Any]) -> bool:
        return self._write("POST", self.path, lease)

    def replace(self, lease: dict[str, Any]) -> bool:
        return self._write("PUT", f"{self.path}/{self.name}", lease)


def _modelserver_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def read_modelserver(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """One ModelServer, or None when there is none."""
    try:
        return dict(_call(api, "GET", _modelserver_path(namespace, name)))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def json_patch_modelserver(
    api: client.ApiClient, namespace: str, name: str, patch: list[dict[str, Any]]
) -> dict[str, Any]:
    """A JSON patch (with its `test` operations) of one ModelServer."""
    return dict(
        _call(
            api,
            "PATCH",
            _modelserver_path(namespace, name),
            body=patch,
            content_type="application/json-patch+json",
        )
    )
