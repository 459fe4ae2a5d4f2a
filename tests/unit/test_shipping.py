"""What ships besides the operator: the Helm chart, the plain manifests, the
Dockerfiles, the alert rules, the dashboard and the Argo CD health check.
(Installing the chart into a cluster: tests/integration/test_chart.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from tests.conftest import REPO
from tfops import metrics

CHART = REPO / "charts" / "tfops"
KUBE_VERSION = "1.36.0"


def _helm(tools: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools / "helm"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _render(tools: Path, *values: str) -> list[dict[str, Any]]:
    sets = [item for value in values for item in ("--set", value)]
    result = _helm(
        tools, "template", "tfops", str(CHART), "-n", "tfops-system",
        "--kube-version", KUBE_VERSION, *sets,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_generated_files_match_their_sources() -> None:
    check = subprocess.run(
        [sys.executable, str(REPO / "hack" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_the_chart_lints(tools: Path) -> None:
    result = _helm(tools, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_wide_by_default_with_two_replicas_and_a_kept_crd(tools: Path) -> None:
    docs = _render(tools)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
        "CustomResourceDefinition", "Deployment", "PodDisruptionBudget", "Role", "RoleBinding",
        "Service", "ServiceAccount",
    ]  # fmt: skip
    crd = next(d for d in docs if d["kind"] == "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--leader-elect" in container["args"]
    assert not any(a.startswith("--namespace") for a in container["args"])


def test_a_namespace_list_gets_roles_there_and_nothing_cluster_wide(tools: Path) -> None:
    docs = _render(tools, "watchNamespaces={team-a,team-b}", "crds.enabled=false")
    kinds = {d["kind"] for d in docs}
    # Cluster-wide only kopf's read of which CRDs and namespaces exist.
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert cluster_role["metadata"]["name"] == "tfops-discovery"
    assert {v for rule in cluster_role["rules"] for v in rule["verbs"]} == {"list", "watch"}
    assert "CustomResourceDefinition" not in kinds
    roles = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Role"
    }
    assert roles == {
        ("team-a", "tfops"), ("team-b", "tfops"), ("tfops-system", "tfops-leader-election"),
    }  # fmt: skip
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_one_replica_has_no_disruption_budget_two_have_one(tools: Path) -> None:
    single = _render(tools, "replicaCount=1", "leaderElection.enabled=false")
    assert "PodDisruptionBudget" not in {d["kind"] for d in single}
    (pdb,) = [d for d in _render(tools) if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_network_policy_admits_the_operator_to_8501_in_each_watched_namespace(
    tools: Path,
) -> None:
    assert "NetworkPolicy" not in {d["kind"] for d in _render(tools)}
    docs = _render(tools, "networkPolicy.enabled=true", "watchNamespaces={team-a,team-b}")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["team-a", "team-b"]
    (rule,) = policies[0]["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8501}]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "tfops-system"
    }
    refused = _helm(
        tools, "template", "tfops", str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "networkPolicy.enabled=true",
    )  # fmt: skip
    assert refused.returncode != 0 and "needs watchNamespaces" in refused.stderr


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice (kubectl's decoder keeps the
    last, PyYAML silently too; strict parsers refuse the file)."""


def _construct_strict_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate keys {repeated}", node.start_mark
        )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_strict_mapping
)


def test_every_yaml_the_project_ships_has_no_duplicate_key(tools: Path) -> None:
    files = [
        *(REPO / "crds").glob("*.yaml"),
        *(REPO / "deploy").rglob("*.yaml"),
        *(REPO / "examples").glob("*.yaml"),
        *(REPO / "monitoring").glob("*.yaml"),
        *(REPO / "tests" / "golden").glob("*.yaml"),
    ]
    texts = {str(f.relative_to(REPO)): f.read_text() for f in files}
    for values in ([], ["watchNamespaces={a}", "networkPolicy.enabled=true"]):
        sets = [item for value in values for item in ("--set", value)]
        rendered = _helm(
            tools, "template", "tfops", str(CHART), "--kube-version", KUBE_VERSION, *sets
        )
        assert rendered.returncode == 0, rendered.stderr
        texts[f"chart render {values}"] = rendered.stdout
    for name, text in texts.items():
        # Goldens: the manifests only; the config files after them are text protos.
        manifests = text.split("\n--- #", 1)[0] if name.startswith("tests/golden") else text
        try:
            list(yaml.load_all(manifests, Loader=_StrictLoader))
        except yaml.YAMLError as error:
            raise AssertionError(f"{name}: {error}") from error


def test_rbac_is_exactly_what_the_operator_uses(tools: Path) -> None:
    (role,) = [
        d for d in _render(tools) if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "tfops"
    ]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # Nothing cluster-admin-like: no wildcards, no Secrets, no RBAC, no deletes but of the
    # optional objects a spec turns off (the HPA, the headless Service).
    assert not any("*" in item for entry in granted for item in entry)
    assert not any(resource in ("secrets", "roles", "clusterroles") for _, resource, _ in granted)
    assert {r for _, r, v in granted if v == "delete"} == {"horizontalpodautoscalers", "services"}
    assert ("", "pods/eviction", "create") in granted
    assert ("", "pods", "delete") not in granted
    # The readiness gate: a pod's status, never the pod itself.
    assert {(r, v) for g, r, v in granted if g == "" and r.startswith("pods")} == {
        ("pods", "list"),
        ("pods", "watch"),
        ("pods/eviction", "create"),
        ("pods/status", "patch"),
    }


def test_values_are_checked_against_the_schema(tools: Path) -> None:
    typo = _helm(tools, "template", "t", str(CHART), "--kube-version", KUBE_VERSION,
                 "--set", "replicaCont=3")  # fmt: skip
    assert typo.returncode != 0 and "additional properties 'replicaCont' not allowed" in typo.stderr
    bad = _helm(tools, "template", "t", str(CHART), "--kube-version", KUBE_VERSION,
                "--set", "operator.logFormat=xml")  # fmt: skip
    assert bad.returncode != 0 and "logFormat" in bad.stderr
    unsafe = _helm(tools, "template", "t", str(CHART), "--kube-version", KUBE_VERSION,
                   "--set", "leaderElection.enabled=false")  # fmt: skip
    assert unsafe.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled=true" in unsafe.stderr


def test_monitoring_objects_need_the_prometheus_operator(tools: Path) -> None:
    without = _helm(tools, "template", "t", str(CHART), "--kube-version", KUBE_VERSION,
                    "--set", "prometheusRule.enabled=true")  # fmt: skip
    assert without.returncode != 0 and "Prometheus Operator's CRDs" in without.stderr
    with_crds = _helm(
        tools, "template", "t", str(CHART), "--kube-version", KUBE_VERSION,
        "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
        "--set", "prometheusRule.enabled=true", "--set", "serviceMonitor.enabled=true",
    )  # fmt: skip
    assert with_crds.returncode == 0, with_crds.stderr
    docs = [d for d in yaml.safe_load_all(with_crds.stdout) if d]
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    alerts = yaml.safe_load((REPO / "monitoring" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    assert any(d["kind"] == "ServiceMonitor" for d in docs)


def test_plain_manifests_are_the_chart_rendered(tools: Path) -> None:
    rendered = subprocess.run(
        ["make", "-s", "--no-print-directory", "manifests-stdout", f"HELM={tools / 'helm'}"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert (REPO / "deploy" / "tfops.yaml").read_text() == rendered.stdout, (
        "deploy/tfops.yaml is stale: run `make manifests`"
    )


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    for dockerfile in (REPO / "Dockerfile", REPO / "serving_image" / "Dockerfile"):
        result = subprocess.run(
            [str(hadolint), str(dockerfile)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{dockerfile}: {result.stdout}"
    operator = (REPO / "Dockerfile").read_text()
    instructions = [line for line in operator.lower().splitlines() if not line.startswith("#")]
    assert "user 65532:65532" in instructions
    # The operator image installs tfops without extras: no TensorFlow in it.
    assert not any("tensorflow" in line for line in instructions)


# The Ubuntu release under each official tensorflow/serving tag (its
# tools/docker/Dockerfile{,.gpu} line 19: ubuntu:20.04 / nvidia/cuda:12.2.0-base-
# ubuntu20.04 up to 2.19.x, ubuntu:22.04 / nvidia/cuda:12.5.1-base-ubuntu22.04
# from 2.20.0), and libjemalloc2's version in that release's archive.
UBUNTU_OF_TAG = {
    "2.19.0": "focal",
    "2.19.1": "focal",
    "2.19.1-gpu": "focal",
    "2.20.0": "jammy",
    "2.20.0-gpu": "jammy",
}
JEMALLOC_IN_UBUNTU = {"focal": "5.2.1-1ubuntu1", "jammy": "5.2.1-4ubuntu1"}


def test_the_serving_image_pins_jemalloc_for_every_tag_it_supports() -> None:
    dockerfile = (REPO / "serving_image" / "Dockerfile").read_text()
    pins = dict(re.findall(r"^\s*(\w+)\) jemalloc=(\S+) ;;", dockerfile, re.MULTILINE))
    default_tag = re.search(r"^ARG TF_SERVING_TAG=(\S+)$", dockerfile, re.MULTILINE)
    assert default_tag and default_tag[1] in UBUNTU_OF_TAG
    for tag, release in UBUNTU_OF_TAG.items():
        assert pins.get(release) == JEMALLOC_IN_UBUNTU[release], (tag, release, pins)
    # The pin is chosen from the base image's own release, never assumed.
    assert ". /etc/os-release" in dockerfile and 'case "${VERSION_CODENAME}"' in dockerfile
    assert "exit 1" in dockerfile  # an unknown release stops the build


def test_alert_rules_pass_promtools_tests(tools: Path) -> None:
    monitoring = REPO / "monitoring"
    checked = subprocess.run(
        [str(tools / "promtool"), "check", "rules", "alerts.yaml"],
        cwd=monitoring, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [str(tools / "promtool"), "test", "rules", "alerts-test.yaml"],
        cwd=monitoring, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


# TF Serving's metric names (TF Serving's monitoring metric definitions; histograms add
# _bucket, _sum and _count) and the kubelet's (cAdvisor) the rules and panels use.
TF_SERVING = {
    ":tensorflow:serving:request_count",
    ":tensorflow:cc:saved_model:load_attempt_count",
    *(
        f"{name}{suffix}"
        for name in (
            ":tensorflow:serving:request_latency",
            ":tensorflow:serving:runtime_latency",
            ":tensorflow:serving:batching_session:queuing_latency",
            ":tensorflow:serving:batching_session:input_batch_size",
            ":tensorflow:serving:batching_session:processed_batch_size",
            ":tensorflow:serving:batching_session:padding_size",
            ":tensorflow:cc:saved_model:load_latency",
        )
        for suffix in ("_bucket", "_sum", "_count")
    ),
}
KUBELET = {"container_memory_working_set_bytes", "container_spec_memory_limit_bytes"}
METRIC = re.compile(r"(:tensorflow:[a-z_:]+|tfops_[a-z_]+|container_[a-z_]+)")


def _tfops_metric_names() -> set[str]:
    names = set()
    for collector in vars(metrics).values():
        if not isinstance(collector, (Counter, Gauge, Histogram)):
            continue
        for family in collector.describe():
            for sample in family.samples or []:
                names.add(sample.name)
            base = family.name
            names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads((REPO / "monitoring" / "dashboard.json").read_text())
    alerts = yaml.safe_load((REPO / "monitoring" / "alerts.yaml").read_text())
    found = [
        (f"panel {p['title']!r}", t["expr"]) for p in dashboard["panels"] for t in p["targets"]
    ]
    found += [(f"alert {r['alert']}", r["expr"]) for g in alerts["groups"] for r in g["rules"]]
    return found


def test_every_query_names_only_metrics_that_exist() -> None:
    known = _tfops_metric_names() | TF_SERVING | KUBELET
    unknown = [
        (where, name) for where, expr in _queries() for name in METRIC.findall(expr)
        if name not in known
    ]  # fmt: skip
    assert unknown == []
    assert "tfops_leader" in known and "tfops_promotion_failures_total" in known


def test_every_dashboard_query_parses(tools: Path, tmp_path: Path) -> None:
    """promtool has no query parser of its own: each panel query becomes a
    recording rule, which `promtool check rules` parses."""
    dashboard = json.loads((REPO / "monitoring" / "dashboard.json").read_text())
    rules = [
        {"record": f"dashboard:panel_{p['id']}_{t['refId'].lower()}", "expr": t["expr"]}
        for p in dashboard["panels"]
        for t in p["targets"]
    ]
    rules_file = tmp_path / "dashboard-rules.yaml"
    # Grafana's variables are not PromQL: stand a value in for each.
    text = yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    rules_file.write_text(text.replace("$namespace", "ml"))
    checked = subprocess.run(
        [str(tools / "promtool"), "check", "rules", str(rules_file)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(rules) >= 15


def _argo_health(obj: dict[str, Any]) -> dict[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((REPO / "deploy" / "argocd" / "health.lua").read_text())
    return {"status": result["status"], "message": result["message"]}


def _ms(generation: int = 2, observed: int | None = 2, **conditions: tuple[str, str]) -> dict:
    status: dict[str, Any] = {
        "conditions": [
            {"type": kind, "status": value, "reason": reason, "message": f"{kind} {reason}"}
            for kind, (value, reason) in conditions.items()
        ]
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"metadata": {"generation": 1}}, "Progressing"),
        (_ms(3, 2, Ready=("True", "AllModelsAvailable")), "Progressing"),
        (_ms(Ready=("True", "AllModelsAvailable"), Degraded=("False", "Healthy")), "Healthy"),
        (_ms(Ready=("False", "Promoting"), Degraded=("False", "Healthy")), "Progressing"),
        (_ms(Ready=("False", "PodsNotReady")), "Progressing"),
        (_ms(Ready=("False", "PromotionFailed"), Degraded=("True", "PromotionFailed")), "Degraded"),
        (_ms(Ready=("True", "AllModelsAvailable"), Degraded=("True", "OOMKilled")), "Degraded"),
        (_ms(Ready=("False", "InvalidSpec"), Degraded=("False", "InvalidSpec")), "Degraded"),
    ],
)
def test_argocd_health_follows_the_conditions(obj: dict, expected: str) -> None:
    health = _argo_health(obj)
    assert health["status"] == expected
    assert health["message"]


def test_every_relative_link_in_the_docs_resolves() -> None:
    # docs/api.md is generated from the schema and links nowhere (its patterns would
    # read as links).
    docs = [page for page in sorted((REPO / "docs").glob("*.md")) if page.name != "api.md"]
    pages = [REPO / "README.md", REPO / "CONTRIBUTING.md", *docs]
    broken = []
    for page in pages:
        text = re.sub(r"`[^`]*`", "", page.read_text())  # code is not a link
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == []


# The workplace's shared documents, spelled so that this file does not name them.
OUTSIDE = "/".join(("..", "shared"))


def test_nothing_refers_to_documents_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = [
        path
        for path in tracked
        if (REPO / path).is_file() and OUTSIDE in (REPO / path).read_text(errors="replace")
    ]
    assert outside == []


def _kube_score_ignored() -> list[str]:
    lines = (REPO / "hack" / "kube-score-ignore.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_kube_score_passes_the_chart_and_every_rendered_example(
    tools: Path, tmp_path: Path
) -> None:
    files = []
    for values in ([], ["watchNamespaces={team-a}", "networkPolicy.enabled=true"]):
        sets = [item for value in values for item in ("--set", value)]
        rendered = _helm(
            tools, "template", "tfops", str(CHART), "--kube-version", KUBE_VERSION, *sets
        )
        assert rendered.returncode == 0, rendered.stderr
        files.append(tmp_path / f"chart-{len(files)}.yaml")
        files[-1].write_text(rendered.stdout)
    for example in sorted((REPO / "examples").glob("*.yaml")):
        rendered = subprocess.run(
            # In the namespace the chart's NetworkPolicy covers, scored together.
            [sys.executable, "-m", "tfops", "render", "-f", str(example), "-n", "team-a"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert rendered.returncode == 0, rendered.stderr
        files.append(tmp_path / example.name)
        files[-1].write_text(rendered.stdout)
    ignored = [item for test in _kube_score_ignored() for item in ("--ignore-test", test)]
    scored = subprocess.run(
        [str(tools / "kube-score"), "score", "--output-format", "ci", "--exit-one-on-warning",
         *ignored, *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    findings = [
        line for line in scored.stdout.splitlines() if line.startswith(("[CRITICAL]", "[WARNING]"))
    ]
    assert scored.returncode == 0 and findings == [], scored.stdout[-3000:] + scored.stderr


def test_every_ignored_kube_score_check_is_explained() -> None:
    for line in (REPO / "hack" / "kube-score-ignore.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            test, _, reason = line.partition("#")
            assert test.strip() and len(reason.strip()) > 20, line
