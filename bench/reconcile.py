"""Reconcile benchmarks on the real local control plane, with baselines in the same run.

1. Latency: apply one ModelServer and wait until all its owned objects exist and
   status.observedGeneration is current; compared with a raw server-side apply of
   the same rendered objects by a client (the floor any operator could reach).
2. Scale: N ModelServers created at once; time until every one is Ready, the
   operator's peak RSS, then RSS and write requests over many idle resync cycles.

Usage: python bench/reconcile.py [--latency-count 50] [--scale-count 300]
       [--soak-cycles 100]   (results: bench/results/reconcile.{json,md})
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config, watch

from tfops.clients import kube
from tfops.devcluster import LocalCluster, find_control_plane
from tfops.model import GROUP, PLURAL, VERSION, parse_spec
from tfops.plan import make_plan
from tfops.render import Owner, render_all
from tfops.testing.fleet import CRD_FILE, OperatorProcess, audit_writes

REPO = Path(__file__).resolve().parents[1]

RESULTS = REPO / "bench" / "results"
SPEC = {
    "models": [
        {
            "name": "ranker",
            "basePath": "gs://bench/ranker",
            "size": "64Mi",
            "versionPolicy": {"specific": [1, 2]},
            "versionLabels": {"stable": 1},
        }
    ],
    "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "1"}},
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def create_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no default ServiceAccount in {name}")


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelServer",
        "metadata": {"name": name},
        "spec": SPEC,
    }


def raw_apply(api: client.ApiClient, namespace: str, name: str) -> float:
    """Server-side apply of the objects tfops renders, by a plain client."""
    spec = parse_spec(SPEC)
    objects = render_all(Owner(name, namespace, "unused"), make_plan(spec))
    started = time.perf_counter()
    for obj in objects:
        obj["metadata"].pop("ownerReferences")  # no owner exists for the baseline
        kube.apply(api, obj)
    return time.perf_counter() - started


def tfops_apply(api: client.ApiClient, namespace: str, name: str) -> float:
    """Create a ModelServer; time until status.observedGeneration is current.
    Watched, not polled: polling would load the apiserver the baseline does not."""
    custom = client.CustomObjectsApi(api)
    started = time.perf_counter()
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, manifest(name)
    )
    generation = created["metadata"]["generation"]
    stream = watch.Watch()
    elapsed = None
    for event in stream.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        field_selector=f"metadata.name={name}",
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=60,
    ):
        if (event["object"].get("status") or {}).get("observedGeneration") == generation:
            elapsed = time.perf_counter() - started
            stream.stop()
    if elapsed is None:
        raise RuntimeError(f"{name}: status.observedGeneration never became {generation}")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.read_namespaced_config_map(f"{name}-config", namespace)
    apps.read_namespaced_deployment(name, namespace)
    core.read_namespaced_service(name, namespace)
    client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(name, namespace)
    return elapsed


def latency(api: client.ApiClient, count: int) -> dict[str, Any]:
    create_namespace(api, "bench-raw")
    create_namespace(api, "bench-tfops")
    raw, ours = [], []
    # Interleaved, so both see the same cluster state and machine noise.
    for index in range(count):
        raw.append(raw_apply(api, "bench-raw", f"fleet-{index}"))
        ours.append(tfops_apply(api, "bench-tfops", f"fleet-{index}"))
    return {
        "count": count,
        "raw_apply_seconds": {"p50": statistics.median(raw), "p95": percentile(raw, 0.95)},
        "tfops_seconds": {"p50": statistics.median(ours), "p95": percentile(ours, 0.95)},
        "ratio_p50": statistics.median(ours) / statistics.median(raw),
        "ratio_p95": percentile(ours, 0.95) / percentile(raw, 0.95),
    }


def all_ready(api: client.ApiClient, namespace: str, count: int) -> int:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )["items"]
    ready = 0
    for item in items:
        status = item.get("status") or {}
        if status.get("observedGeneration") != item["metadata"]["generation"]:
            continue
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        ):
            ready += 1
    return ready if len(items) == count else 0


def scale(
    *,
    cluster: LocalCluster,
    api: client.ApiClient,
    operator: OperatorProcess,
    count: int,
    soak_cycles: int,
    resync: float,
) -> dict[str, Any]:
    namespace = "bench-scale"
    create_namespace(api, namespace)
    process = psutil.Process(operator.process.pid)
    rss_before = process.memory_info().rss
    custom = client.CustomObjectsApi(api)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, manifest(f"fleet-{i}")
                ),
                range(count),
            )
        )
    created = time.perf_counter() - started
    peak = rss_before
    while True:
        peak = max(peak, process.memory_info().rss)
        if all_ready(api, namespace, count) == count:
            break
        if time.perf_counter() - started > 600:
            raise RuntimeError("not every ModelServer became Ready within 600 s")
        time.sleep(0.5)
    ready_after = time.perf_counter() - started

    # Idle: every ModelServer is re-observed each resync; nothing should be written.
    time.sleep(3 * resync)
    since = time.time()
    samples = []
    soak_started = time.perf_counter()
    while time.perf_counter() - soak_started < soak_cycles * resync:
        samples.append(process.memory_info().rss)
        time.sleep(resync)
    writes = audit_writes(cluster, namespace, since)
    reconciles = operator.metric("tfops_reconciles_total", trigger="resync", result="ok")
    first = statistics.mean(samples[: max(1, len(samples) // 10)])
    last = statistics.mean(samples[-max(1, len(samples) // 10) :])
    return {
        "count": count,
        "create_seconds": created,
        "all_ready_seconds": ready_after,
        "rss_idle_before_mb": rss_before / 2**20,
        "rss_peak_mb": max(peak, *samples) / 2**20,
        "soak_cycles": soak_cycles,
        "resync_seconds": resync,
        "resync_reconciles_total": reconciles,
        "rss_soak_start_mb": first / 2**20,
        "rss_soak_end_mb": last / 2**20,
        "rss_soak_drift_percent": 100 * (last - first) / first,
        "idle_write_requests": len(writes),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "python": platform.python_version(),
    }


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reconcile.json").write_text(json.dumps(results, indent=2) + "\n")
    lat, big = results["latency"], results["scale"]
    lines = [
        f"# Reconcile benchmark ({results['date']})",
        "",
        f"Machine: {results['machine']['cpus']} CPUs ({results['machine']['cpu_model']}), "
        f"{results['machine']['memory_gb']} GB; everything (control plane, operator, "
        "benchmark client) on it.",
        "",
        "| measure | value | budget |",
        "| --- | --- | --- |",
        f"| apply -> owned objects + observedGeneration, p50 ({lat['count']} ModelServers) | "
        f"{lat['tfops_seconds']['p50'] * 1000:.0f} ms | |",
        f"| raw server-side apply of the same objects, p50 | "
        f"{lat['raw_apply_seconds']['p50'] * 1000:.0f} ms | |",
        f"| ratio p50 / p95 | {lat['ratio_p50']:.2f}x / {lat['ratio_p95']:.2f}x | <= 1.5x (p50) |",
        f"| {big['count']} ModelServers created at once -> all Ready | "
        f"{big['all_ready_seconds']:.1f} s | <= 60 s |",
        f"| operator RSS, peak | {big['rss_peak_mb']:.0f} MB | <= 150 MB |",
        f"| RSS drift over {big['soak_cycles']} resync cycles of {big['count']} ModelServers | "
        f"{big['rss_soak_drift_percent']:+.1f}% ({big['rss_soak_start_mb']:.0f} -> "
        f"{big['rss_soak_end_mb']:.0f} MB) | within +-5% |",
        f"| write requests while idle ({big['resync_reconciles_total']:.0f} resyncs) | "
        f"{big['idle_write_requests']} | 0 |",
    ]
    (RESULTS / "reconcile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-count", type=int, default=50)
    parser.add_argument("--scale-count", type=int, default=300)
    parser.add_argument("--soak-cycles", type=int, default=100)
    parser.add_argument("--resync-seconds", type=float, default=10.0)
    args = parser.parse_args()

    pods = args.scale_count + args.latency_count
    with LocalCluster(
        find_control_plane(),
        nodes=3,
        pods_per_node=pods // 3 + 50,
        log=lambda m: print(m, flush=True),
    ) as cluster:
        cluster.install_crd(CRD_FILE, f"{PLURAL}.{GROUP}")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        # Model states are not polled here (empty template): Ready then means the
        # pods are ready; the REST checks are covered by the integration tests.
        with OperatorProcess.start(cluster, "", resync_seconds=args.resync_seconds) as operator:
            print("latency...", flush=True)
            latency_results = latency(api, args.latency_count)
            print(json.dumps(latency_results, indent=1), flush=True)
            print("scale...", flush=True)
            scale_results = scale(
                cluster=cluster,
                api=api,
                operator=operator,
                count=args.scale_count,
                soak_cycles=args.soak_cycles,
                resync=args.resync_seconds,
            )
        write_results(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": machine(),
                "latency": latency_results,
                "scale": scale_results,
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
