"""Where a fleet's pods run and who they are: the Kubernetes pod fields a platform
team sets (scheduling, identity, metadata, extra environment), typed so that the
CRD and the operator refuse what Kubernetes would refuse when the Deployment is
applied, naming the field. tfops renders them into the pod template
(tfops.render.deployment); tfops' own labels, annotations and variables always win
and cannot be set here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tfops.schema import FreeObject, Rule, matches, spec_field

# Kubernetes' name and label grammars (k8s.io/apimachinery/pkg/util/validation).
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_SUBDOMAIN_PATTERN = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$"
QUALIFIED_NAME_PATTERN = (
    rf"^({_DNS_LABEL}(\.{_DNS_LABEL})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# Environment variable names: printable ASCII without '=' (Kubernetes 1.32+).
ENV_NAME_PATTERN = r"^[ -<>-~]+$"

# What tfops sets itself, so a ModelServer cannot: the labels that select and
# identify the fleet, the annotations that roll it, the variables that size
# TensorFlow's threads and preload the allocator.
TFOPS_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
)
TFOPS_PREFIX = "serving.tfops.dev/"
TFOPS_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")
TFOPS_ENV = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "LD_PRELOAD")


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def _ours(key: str, reserved: tuple[str, ...]) -> bool:
    return key in reserved or key.startswith(TFOPS_PREFIX)


@dataclass(frozen=True, kw_only=True)
class Toleration:
    key: str | None = spec_field(
        "Taint key to tolerate; empty with operator Exists tolerates every taint.",
        default=None,
        maxLength=316,
        pattern=rf"^$|{QUALIFIED_NAME_PATTERN}",
    )
    operator: Literal["Exists", "Equal"] | None = spec_field(
        "Equal (the default) matches the value; Exists any value.", default=None
    )
    value: str | None = spec_field(
        "Taint value to match (with Equal).", default=None, pattern=LABEL_VALUE_PATTERN
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = spec_field(
        "Taint effect to tolerate; every effect when omitted.", default=None
    )
    toleration_seconds: int | None = spec_field(
        "With NoExecute: how long the pod stays bound after the taint appears.",
        default=None,
        minimum=0,
    )

    RULES = (
        Rule(
            "(has(self.key) && self.key != '') "
            "|| (has(self.operator) && self.operator == 'Exists')",
            lambda t: bool(t.key) or t.operator == "Exists",
            "a toleration without a key needs operator: Exists (it then tolerates every taint)",
            ".operator",
        ),
        Rule(
            "!(has(self.operator) && self.operator == 'Exists') || !has(self.value) "
            "|| self.value == ''",
            lambda t: t.operator != "Exists" or not t.value,
            "operator Exists matches any value: remove value, or use operator: Equal",
            ".value",
        ),
        Rule(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            "tolerationSeconds applies only to effect: NoExecute",
            ".tolerationSeconds",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class LabelSelectorRequirement:
    key: str = spec_field("Label key.", pattern=QUALIFIED_NAME_PATTERN, maxLength=316)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = spec_field(
        "How the key's value is matched."
    )
    values: tuple[str, ...] | None = spec_field(
        "Values for In and NotIn; none for Exists and DoesNotExist.",
        default=None,
        maxItems=64,
        item_pattern=LABEL_VALUE_PATTERN,
    )

    RULES = (
        Rule(
            "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) "
            ": (!has(self.values) || size(self.values) == 0)",
            lambda r: bool(r.values) if r.operator in ("In", "NotIn") else not r.values,
            "In and NotIn need values; Exists and DoesNotExist take none",
            ".values",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class LabelSelector:
    match_labels: dict[str, str] | None = spec_field(
        "Labels the pods must carry.",
        default=None,
        maxProperties=32,
        keyPattern=QUALIFIED_NAME_PATTERN,
        item_pattern=LABEL_VALUE_PATTERN,
    )
    match_expressions: tuple[LabelSelectorRequirement, ...] | None = spec_field(
        "Label requirements, all of which must hold.", default=None, maxItems=32
    )


@dataclass(frozen=True, kw_only=True)
class NodeSelectorRequirement:
    key: str = spec_field("Node label key.", pattern=QUALIFIED_NAME_PATTERN, maxLength=316)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = spec_field(
        "How the node's label value is matched."
    )
    values: tuple[str, ...] | None = spec_field(
        "Values for In and NotIn; one integer for Gt and Lt; none for Exists and DoesNotExist.",
        default=None,
        maxItems=64,
        item_maxLength=63,
    )

    RULES = (
        Rule(
            "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) "
            ": self.operator in ['Gt', 'Lt'] ? (has(self.values) && size(self.values) == 1 "
            "&& self.values.all(v, v.matches('^-?[0-9]+$'))) "
            ": (!has(self.values) || size(self.values) == 0)",
            lambda r: (
                bool(r.values)
                if r.operator in ("In", "NotIn")
                else (
                    r.values is not None
                    and len(r.values) == 1
                    and matches(r"^-?[0-9]+$", r.values[0])
                )
                if r.operator in ("Gt", "Lt")
                else not r.values
            ),
            "In and NotIn need values, Gt and Lt exactly one integer, Exists and DoesNotExist none",
            ".values",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class NodeSelectorTerm:
    match_expressions: tuple[NodeSelectorRequirement, ...] | None = spec_field(
        "Requirements on node labels, all of which must hold.", default=None, maxItems=32
    )
    match_fields: tuple[NodeSelectorRequirement, ...] | None = spec_field(
        "Requirements on node fields (metadata.name).", default=None, maxItems=32
    )


@dataclass(frozen=True, kw_only=True)
class NodeSelector:
    node_selector_terms: tuple[NodeSelectorTerm, ...] = spec_field(
        "Terms of which at least one must hold.", minItems=1, maxItems=32
    )


@dataclass(frozen=True, kw_only=True)
class PreferredSchedulingTerm:
    weight: int = spec_field("Preference weight.", minimum=1, maximum=100)
    preference: NodeSelectorTerm = spec_field("The nodes preferred.")


@dataclass(frozen=True, kw_only=True)
class NodeAffinity:
    required_during_scheduling_ignored_during_execution: NodeSelector | None = spec_field(
        "Nodes the pods must run on.", default=None
    )
    preferred_during_scheduling_ignored_during_execution: (
        tuple[PreferredSchedulingTerm, ...] | None
    ) = spec_field("Nodes the pods prefer.", default=None, maxItems=32)


@dataclass(frozen=True, kw_only=True)
class PodAffinityTerm:
    label_selector: LabelSelector | None = spec_field("The pods this term is about.", default=None)
    namespaces: tuple[str, ...] | None = spec_field(
        "Namespaces of those pods (default: the ModelServer's).",
        default=None,
        maxItems=32,
        item_pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    )
    namespace_selector: LabelSelector | None = spec_field(
        "Namespaces of those pods, by label.", default=None
    )
    topology_key: str = spec_field(
        "Node label that defines co-location, e.g. kubernetes.io/hostname.",
        pattern=QUALIFIED_NAME_PATTERN,
        maxLength=316,
    )
    match_label_keys: tuple[str, ...] | None = spec_field(
        "Pod label keys whose values are added to the selector.",
        default=None,
        maxItems=16,
        item_pattern=QUALIFIED_NAME_PATTERN,
    )
    mismatch_label_keys: tuple[str, ...] | None = spec_field(
        "Pod label keys whose values must differ.",
        default=None,
        maxItems=16,
        item_pattern=QUALIFIED_NAME_PATTERN,
    )


@dataclass(frozen=True, kw_only=True)
class WeightedPodAffinityTerm:
    weight: int = spec_field("Preference weight.", minimum=1, maximum=100)
    pod_affinity_term: PodAffinityTerm = spec_field("The preferred placement.")


@dataclass(frozen=True, kw_only=True)
class PodAffinity:
    required_during_scheduling_ignored_during_execution: tuple[PodAffinityTerm, ...] | None = (
        spec_field("Placements the pods must satisfy.", default=None, maxItems=32)
    )
    preferred_during_scheduling_ignored_during_execution: (
        tuple[WeightedPodAffinityTerm, ...] | None
    ) = spec_field("Placements the pods prefer.", default=None, maxItems=32)


@dataclass(frozen=True, kw_only=True)
class Affinity:
    node_affinity: NodeAffinity | None = spec_field("Which nodes.", default=None)
    pod_affinity: PodAffinity | None = spec_field("Near which pods.", default=None)
    pod_anti_affinity: PodAffinity | None = spec_field("Away from which pods.", default=None)


@dataclass(frozen=True, kw_only=True)
class TopologySpreadConstraint:
    max_skew: int = spec_field(
        "How unevenly the fleet's pods may spread across the topology's domains.", minimum=1
    )
    topology_key: str = spec_field(
        "Node label that defines the domains, e.g. topology.kubernetes.io/zone.",
        pattern=QUALIFIED_NAME_PATTERN,
        maxLength=316,
    )
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = spec_field(
        "DoNotSchedule keeps a pod pending; ScheduleAnyway only prefers the spread."
    )
    label_selector: LabelSelector | None = spec_field(
        "The pods counted (default: none; give the fleet's, e.g. "
        "serving.tfops.dev/modelserver: NAME).",
        default=None,
    )
    min_domains: int | None = spec_field(
        "With DoNotSchedule: the fewest eligible domains.", default=None, minimum=1
    )
    node_affinity_policy: Literal["Honor", "Ignore"] | None = spec_field(
        "Whether the pods' node affinity limits the domains.", default=None
    )
    node_taints_policy: Literal["Honor", "Ignore"] | None = spec_field(
        "Whether node taints limit the domains.", default=None
    )
    match_label_keys: tuple[str, ...] | None = spec_field(
        "Pod label keys whose values are added to the selector (e.g. pod-template-hash: "
        "spread each revision).",
        default=None,
        maxItems=16,
        item_pattern=QUALIFIED_NAME_PATTERN,
    )

    RULES = (
        Rule(
            "!has(self.minDomains) || self.whenUnsatisfiable == 'DoNotSchedule'",
            lambda c: c.min_domains is None or c.when_unsatisfiable == "DoNotSchedule",
            "minDomains applies only with whenUnsatisfiable: DoNotSchedule",
            ".minDomains",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class LocalObjectReference:
    name: str = spec_field(
        "Name of an object in the ModelServer's namespace.",
        pattern=DNS_SUBDOMAIN_PATTERN,
        maxLength=253,
    )


@dataclass(frozen=True, kw_only=True)
class EnvVarSource:
    field_ref: FreeObject | None = spec_field(
        "A field of the pod, e.g. {fieldPath: metadata.name}.", default=None
    )
    resource_field_ref: FreeObject | None = spec_field(
        "A resource of the container, e.g. {resource: limits.memory}.", default=None
    )
    config_map_key_ref: FreeObject | None = spec_field(
        "A key of a ConfigMap: {name, key, optional}.", default=None
    )
    secret_key_ref: FreeObject | None = spec_field(
        "A key of a Secret: {name, key, optional}.", default=None
    )

    RULES = (
        Rule(
            "(has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) "
            "+ (has(self.configMapKeyRef) ? 1 : 0) + (has(self.secretKeyRef) ? 1 : 0) == 1",
            lambda v: (
                sum(
                    x is not None
                    for x in (
                        v.field_ref,
                        v.resource_field_ref,
                        v.config_map_key_ref,
                        v.secret_key_ref,
                    )
                )
                == 1
            ),
            "give exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
            "",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class EnvVar:
    name: str = spec_field(
        "Variable name (printable ASCII without '=').",
        pattern=ENV_NAME_PATTERN,
        maxLength=256,
    )
    value: str | None = spec_field("Its value.", default=None, maxLength=32768)
    value_from: EnvVarSource | None = spec_field(
        "Where its value comes from instead, as in a pod.", default=None
    )

    RULES = (
        Rule(
            "!(has(self.value) && has(self.valueFrom))",
            lambda e: e.value is None or e.value_from is None,
            "give value or valueFrom, not both",
            ".valueFrom",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class EnvSourceReference:
    name: str = spec_field(
        "Name of the ConfigMap or Secret.", pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253
    )
    optional: bool | None = spec_field("Start the pod even when it is missing.", default=None)


@dataclass(frozen=True, kw_only=True)
class EnvFromSource:
    prefix: str | None = spec_field(
        "Prefix for each variable's name.", default=None, maxLength=256, pattern=ENV_NAME_PATTERN
    )
    config_map_ref: EnvSourceReference | None = spec_field(
        "Every key of this ConfigMap as a variable.", default=None
    )
    secret_ref: EnvSourceReference | None = spec_field(
        "Every key of this Secret as a variable.", default=None
    )

    RULES = (
        Rule(
            "has(self.configMapRef) != has(self.secretRef)",
            lambda e: (e.config_map_ref is None) != (e.secret_ref is None),
            "give exactly one of configMapRef or secretRef",
            "",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class PodSettings:
    node_selector: dict[str, str] | None = spec_field(
        "Node labels the pods must run on, e.g. cloud.google.com/gke-accelerator: nvidia-l4.",
        default=None,
        maxProperties=32,
        keyPattern=QUALIFIED_NAME_PATTERN,
        item_pattern=LABEL_VALUE_PATTERN,
    )
    tolerations: tuple[Toleration, ...] | None = spec_field(
        "Taints the pods tolerate, e.g. nvidia.com/gpu:NoSchedule on a GPU node pool.",
        default=None,
        maxItems=32,
    )
    affinity: Affinity | None = spec_field("Node and pod (anti-)affinity.", default=None)
    topology_spread_constraints: tuple[TopologySpreadConstraint, ...] | None = spec_field(
        "How the pods spread over nodes or zones. Default: over nodes "
        "(kubernetes.io/hostname, maxSkew 1, ScheduleAnyway, per revision); an empty list "
        "turns the default off.",
        default=None,
        maxItems=8,
    )
    priority_class_name: str | None = spec_field(
        "PriorityClass of the pods.", default=None, pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253
    )
    image_pull_secrets: tuple[LocalObjectReference, ...] | None = spec_field(
        "Secrets to pull the image from a private registry.", default=None, maxItems=16
    )
    service_account_name: str | None = spec_field(
        "ServiceAccount of the pods, e.g. one bound to cloud credentials for gs:// "
        "(Workload Identity). Default: the namespace's default.",
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        maxLength=253,
    )
    automount_service_account_token: bool | None = spec_field(
        "Mount the ServiceAccount's API token into the pods. Default false: TF Serving "
        "never calls the API; cloud credentials come through the metadata server.",
        default=None,
    )
    labels: dict[str, str] | None = spec_field(
        "Extra pod labels (for meshes, cost allocation). tfops' own labels cannot be set.",
        default=None,
        maxProperties=32,
        keyPattern=QUALIFIED_NAME_PATTERN,
        item_pattern=LABEL_VALUE_PATTERN,
    )
    annotations: dict[str, str] | None = spec_field(
        "Extra pod annotations (for meshes, scrapers). tfops' own cannot be set.",
        default=None,
        maxProperties=32,
        keyPattern=QUALIFIED_NAME_PATTERN,
        item_maxLength=16384,
    )
    env: tuple[EnvVar, ...] | None = spec_field(
        "Extra variables for the serving container (e.g. cloud credentials settings). "
        "The ones tfops sets (thread counts, LD_PRELOAD) cannot be set.",
        default=None,
        maxItems=64,
    )
    env_from: tuple[EnvFromSource, ...] | None = spec_field(
        "Variables from ConfigMaps or Secrets for the serving container. Variables tfops "
        "sets still win.",
        default=None,
        maxItems=16,
    )

    RULES = (
        Rule(
            f"!has(self.labels) || self.labels.all(k, !(k in {_cel_list(TFOPS_LABELS)}) "
            f"&& !k.startsWith('{TFOPS_PREFIX}'))",
            lambda p: not any(_ours(k, TFOPS_LABELS) for k in p.labels or {}),
            f"labels may not set tfops' own ({', '.join(TFOPS_LABELS)}, {TFOPS_PREFIX}*): "
            "tfops selects and identifies the fleet by them",
            ".labels",
        ),
        Rule(
            f"!has(self.annotations) || self.annotations.all(k, "
            f"!(k in {_cel_list(TFOPS_ANNOTATIONS)}) && !k.startsWith('{TFOPS_PREFIX}'))",
            lambda p: not any(_ours(k, TFOPS_ANNOTATIONS) for k in p.annotations or {}),
            f"annotations may not set tfops' own ({', '.join(TFOPS_ANNOTATIONS)}, "
            f"{TFOPS_PREFIX}*): use spec.monitoring for the Prometheus ones",
            ".annotations",
        ),
        Rule(
            f"!has(self.env) || self.env.all(e, !(e.name in {_cel_list(TFOPS_ENV)}))",
            lambda p: not any(e.name in TFOPS_ENV for e in p.env or ()),
            f"env may not set {', '.join(TFOPS_ENV)}: tfops sizes the threads from "
            "spec.threads and the CPU limit, and sets LD_PRELOAD from spec.allocator",
            ".env",
        ),
        Rule(
            "!has(self.env) || self.env.all(e, self.env.exists_one(f, f.name == e.name))",
            lambda p: len({e.name for e in p.env or ()}) == len(p.env or ()),
            "env names must be unique",
            ".env",
        ),
    )
