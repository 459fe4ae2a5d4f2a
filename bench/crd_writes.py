"""What one ModelServer status write costs the API server, by what the CRD carries.

At 1000 fleets a CPU profile of kube-apiserver put the ModelServer status writes at
15% of its CPU while they were a tenth of the writes: a custom resource is decoded,
schema-validated and CEL-validated whole on every status patch. This measures the
API server's CPU-seconds per status patch on the shipped CRD, on the CRD without
its root rule (metadata.name, checked by the schema instead), and on the CRD
without any CEL rule, each on a fresh local control plane, with a Pod status
patch of the same count as the reference.

Usage: python -m bench.crd_writes [--objects 50] [--rounds 40]
       (results: bench/results/crd_writes.{json,md})
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from kubernetes import client, config

from bench.reconcile import RESULTS, create_namespace, machine, manifest
from tfops.clients import kube
from tfops.devcluster import LocalCluster, find_control_plane
from tfops.model import GROUP, PLURAL, VERSION
from tfops.testing.fleet import CRD_FILE

VARIANTS = ("shipped", "no root rule", "no CEL rules")
NAMESPACE = "bench-crd"


def crd_variant(variant: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(Path(CRD_FILE).read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    if variant == "no root rule":
        rule = root.pop("x-kubernetes-validations")
        assert len(rule) == 1 and "metadata.name" in rule[0]["rule"], rule
        root["properties"]["metadata"] = {
            "type": "object",
            "properties": {
                "name": {
                    "type": "string",
                    "maxLength": 50,
                    "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$",
                }
            },
        }
    elif variant == "no CEL rules":

        def strip(schema: Any) -> None:
            if isinstance(schema, dict):
                schema.pop("x-kubernetes-validations", None)
                for value in schema.values():
                    strip(value)
            elif isinstance(schema, list):
                for value in schema:
                    strip(value)

        strip(root)
    return crd


def apiserver_cpu() -> float:
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "kube-apiserver":
            times = process.cpu_times()
            return float(times.user + times.system)
    raise RuntimeError("no kube-apiserver process")


def status_change(round_: int) -> dict[str, Any]:
    """A status of the shape tfops writes, different each round."""
    return {
        "observedGeneration": 1,
        "replicas": 2,
        "readyReplicas": round_ % 3,
        "replicasSummary": f"{round_ % 3}/2",
        "conditions": [
            {
                "type": kind,
                "status": "False",
                "reason": "Progressing",
                "message": f"round {round_}: " + "two pods, two models, one loading. " * 4,
                "lastTransitionTime": "2026-12-06T00:00:00Z",
                "observedGeneration": 1,
            }
            for kind in ("Ready", "Progressing", "Degraded", "MemoryLeakSuspected")
        ],
    }


def measure(variant: str, objects: int, rounds: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as scratch,
        LocalCluster(find_control_plane(), nodes=1, pods_per_node=objects + 10) as cluster,
    ):
        crd_file = Path(scratch) / "crd.yaml"
        crd_file.write_text(yaml.safe_dump(crd_variant(variant)))
        cluster.install_crd(crd_file, f"{PLURAL}.{GROUP}")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        create_namespace(api, NAMESPACE)
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        for index in range(objects):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, manifest(f"fleet-{index}")
            )
            core.create_namespaced_pod(
                NAMESPACE,
                {
                    "metadata": {"name": f"pod-{index}"},
                    "spec": {"containers": [{"name": "c", "image": "none"}]},
                },
            )
        time.sleep(3)  # the creations' own work settles

        def cost(patch: Any) -> float:
            before = apiserver_cpu()
            for round_ in range(rounds):
                for index in range(objects):
                    patch(index, round_)
            return (apiserver_cpu() - before) * 1000 / (objects * rounds)

        modelserver_ms = cost(
            lambda index, round_: kube.patch_status(
                api, NAMESPACE, f"fleet-{index}", status_change(round_)
            )
        )
        pod_ms = cost(
            lambda index, round_: core.patch_namespaced_pod_status(
                f"pod-{index}",
                NAMESPACE,
                {
                    "status": {
                        "conditions": [
                            {
                                "type": "serving.tfops.dev/models-ready",
                                "status": str(round_ % 2 == 0),
                            }
                        ]
                    }
                },
            )
        )
    return {
        "variant": variant,
        "patches": objects * rounds,
        "modelserver_status_ms": modelserver_ms,
        "pod_status_ms": pod_ms,
    }


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crd_writes.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# API server CPU per status patch ({results['date']})",
        "",
        f"Machine: {results['machine']['cpus']} CPUs ({results['machine']['cpu_model']}), "
        f"{results['machine']['memory_gb']} GB; {results['runs'][0]['patches']} patches of "
        "each kind per CRD variant, one at a time, on a fresh local control plane.",
        "",
        "| CRD | ModelServer status patch | Pod status patch (reference) | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for run in results["runs"]:
        lines.append(
            f"| {run['variant']} | {run['modelserver_status_ms']:.2f} ms | "
            f"{run['pod_status_ms']:.2f} ms | "
            f"{run['modelserver_status_ms'] / run['pod_status_ms']:.1f}x |"
        )
    (RESULTS / "crd_writes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    runs = [measure(variant, args.objects, args.rounds) for variant in VARIANTS]
    write_results({"date": time.strftime("%Y-%m-%d"), "machine": machine(), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
