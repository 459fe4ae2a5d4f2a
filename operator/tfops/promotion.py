"""Model version transitions through TF Serving's real constraints. Pure.

TF Serving applies models.config as the whole truth, and three of its rules make a
naive edit dangerous:

- a version label may only move to a version that is already AVAILABLE (else the
  reload fails with FailedPrecondition). tfops renders
  --allow_version_labels_for_unavailable_models, so a *new* label may name a
  version still loading (a pod starting with labels in its config would exit
  otherwise), but a label that moves still needs its target AVAILABLE;
- a reload is all or nothing: when the label check fails, none of that config is
  applied (no version is loaded), and every later poll of the same file fails the
  same way. So a label only moves once its version is AVAILABLE on every running
  pod, ready or still starting;
- when the only new version of a model fails to load, the availability-preserving
  policy unloads the old one anyway (nothing is loading any more), so the model
  stops serving.

So a change to an already-served model goes in steps, each a models.config write
(hot reload, no pod restart): serve old and new versions side by side, move the
labels once every new version is AVAILABLE on every running pod, then, after a grace
period, stop serving what the spec no longer names. A new version that fails to
load (END with an error) or is not AVAILABLE within the time-out rolls the model
back to the config it had before. The state lives in status.promotions and the
live ConfigMap, so an operator restart picks a transition up where it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tfops.model import ModelSpec
from tfops.model_status import VersionStatus
from tfops.timefmt import epoch, iso

LOADING = "Loading"
DRAINING = "Draining"
DONE = "Done"
ROLLED_BACK = "RolledBack"
REFUSED = "Refused"
IN_FLIGHT = (LOADING, DRAINING)


@dataclass(frozen=True)
class Configured:
    """What models.config tells TF Serving for one model: its specific versions
    (None under a latest/all policy, which TF Serving resolves itself) and labels."""

    versions: tuple[int, ...] | None
    labels: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, model: ModelSpec) -> Configured:
        specific = model.policy().specific
        return cls(
            None if specific is None else tuple(sorted(specific)),
            tuple(sorted((model.version_labels or {}).items())),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Configured:
        versions = data.get("versions")
        return cls(
            None if versions is None else tuple(sorted(int(v) for v in versions)),
            tuple(sorted((str(k), int(v)) for k, v in (data.get("labels") or {}).items())),
        )

    def to_json(self) -> dict[str, Any]:
        return {"versions": None if self.versions is None else list(self.versions)} | (
            {"labels": dict(self.labels)} if self.labels else {}
        )

    @property
    def label_map(self) -> dict[str, int]:
        return dict(self.labels)

    def describe(self) -> str:
        versions = "latest" if self.versions is None else ", ".join(map(str, self.versions))
        labels = ", ".join(f"{k}={v}" for k, v in self.labels)
        return f"versions {versions}" + (f" (labels {labels})" if labels else "")


@dataclass(frozen=True)
class Seen:
    """One model as the ready pods report it."""

    pods: int = 0
    available: dict[int, int] = field(default_factory=dict)  # version -> pods
    errors: dict[int, str] = field(default_factory=dict)  # version -> TF Serving's error

    @classmethod
    def of(
        cls, model: str, states: dict[str, dict[str, list[VersionStatus]]], *, pods: int
    ) -> Seen:
        """From the states of the pods that answered; a version is everywhere only
        when every one of `pods` (the running pods) reports it AVAILABLE."""
        available: dict[int, int] = {}
        errors: dict[int, str] = {}
        for pod_states in states.values():
            for version in pod_states.get(model, []):
                if version.state == "AVAILABLE":
                    available[version.version] = available.get(version.version, 0) + 1
                elif version.failed:
                    errors[version.version] = version.error_message or version.error_code
        return cls(pods, available, errors)

    def everywhere(self, version: int) -> bool:
        return self.pods > 0 and self.available.get(version, 0) == self.pods


@dataclass(frozen=True)
class Settings:
    grace_seconds: float
    timeout_seconds: float


@dataclass(frozen=True)
class Step:
    """What to write for one model now, and what to remember and say about it."""

    write: Configured
    record: dict[str, Any] | None = None  # the model's entry in status.promotions
    event: tuple[str, str, str] | None = None  # (type, reason, message) on a change of step
    failure: str | None = None  # why the model was rolled back or refused


def step(
    model: ModelSpec,
    live: Configured | None,
    seen: Seen,
    previous: dict[str, Any] | None,
    *,
    now: float,
    generation: int,
    settings: Settings,
    memory_error: str | None = None,
) -> Step:
    """The next step of `model`'s transition from what is live to what the spec asks.

    `memory_error` is the caller's verdict on whether the pods' limit can hold the
    old and new versions side by side (checked only when a transition starts)."""
    desired = Configured.of(model)
    if live is None:
        # A model new to the config: its labels are new labels, which TF Serving
        # accepts before the versions load (--allow_version_labels_for_unavailable_
        # models), and there is nothing older to keep serving.
        return Step(desired)
    # A new target while a transition is in flight starts from where that one did.
    origin: Configured | None = None
    if previous is not None and Configured.from_json(previous["to"]) != desired:
        if previous["step"] in IN_FLIGHT:
            origin = Configured.from_json(previous["from"])
        previous = None
    if previous is not None and previous["step"] == DONE:
        return Step(desired, previous)
    if previous is not None and previous["step"] in (ROLLED_BACK, REFUSED):
        if int(previous["generation"]) == generation:
            base = Configured.from_json(previous["from"])
            return Step(base, previous, None, previous["message"])
        previous = None  # the spec was edited since: try again
    if previous is not None:
        base = Configured.from_json(previous["from"])
        return _advance(model.name, base, desired, seen, dict(previous), now=now, settings=settings)

    base = origin or live
    if base == desired:
        return Step(desired)
    record: dict[str, Any] = {
        "model": model.name,
        "from": base.to_json(),
        "to": desired.to_json(),
        "startedAt": iso(now),
        "generation": generation,
    }
    if memory_error:
        record |= {"step": REFUSED, "message": memory_error}
        return Step(base, record, ("Warning", "PromotionRefused", memory_error), memory_error)
    return _advance(model.name, base, desired, seen, record, now=now, settings=settings)


def _advance(
    name: str,
    base: Configured,
    desired: Configured,
    seen: Seen,
    record: dict[str, Any],
    *,
    now: float,
    settings: Settings,
) -> Step:
    old_labels, new_labels = base.label_map, desired.label_map
    moving = {label: v for label, v in new_labels.items() if old_labels.get(label) != v}
    new_versions = set(desired.versions or ()) - set(base.versions or ())
    needed = new_versions | set(moving.values())
    waiting = sorted(v for v in needed if not seen.everywhere(v))
    failed = {v: seen.errors[v] for v in sorted(needed) if v in seen.errors}
    before = record.get("step")  # None when the transition starts now

    if failed:
        version, error = next(iter(failed.items()))
        return _roll_back(name, base, record, f"version {version} failed to load: {error}")
    # No ready pod reports anything: nothing is served to protect, and pods that
    # start now load old and new from the config as written; wait for them.
    if waiting and seen.pods and now - epoch(record["startedAt"]) > settings.timeout_seconds:
        return _roll_back(
            name,
            base,
            record,
            f"version {', '.join(map(str, waiting))} was not AVAILABLE on every running pod "
            f"within {settings.timeout_seconds:.0f}s",
        )
    if waiting:
        labels = {k: v for k, v in new_labels.items() if k not in moving}
        labels |= {k: old_labels[k] for k in moving if k in old_labels}
        record = record | {"step": LOADING}
        write = Configured(_union(desired, base, labels), tuple(sorted(labels.items())))
        event = None
        if before != LOADING:
            event = (
                "Normal",
                "Promoting",
                f"Model {name}: loading version {', '.join(map(str, waiting))} beside "
                f"{base.describe()}"
                + (
                    f"; labels {', '.join(sorted(moving))} move once it is AVAILABLE on "
                    "every running pod"
                    if moving
                    else ""
                ),
            )
        return Step(write, record, event)

    settled = record.get("settledAt") or iso(now)
    record = record | {"settledAt": settled}
    retiring = set(base.versions or ()) - set(desired.versions or ()) - set(new_labels.values())
    if desired.versions is not None and retiring and now - epoch(settled) < settings.grace_seconds:
        record["step"] = DRAINING
        write = Configured(_union(desired, base, new_labels), desired.labels)
        event = None
        if before != DRAINING:
            event = (
                "Normal",
                "LabelsMoved" if moving else "VersionsAvailable",
                f"Model {name}: {desired.describe()} AVAILABLE on every running pod; "
                f"version {', '.join(map(str, sorted(retiring)))} is unloaded after "
                f"{settings.grace_seconds:.0f}s",
            )
        return Step(write, record, event)
    record["step"] = DONE
    return Step(
        desired,
        record,
        ("Normal", "PromotionComplete", f"Model {name}: now serving {desired.describe()}"),
    )


def _union(desired: Configured, base: Configured, labels: dict[str, int]) -> tuple[int, ...] | None:
    if desired.versions is None:
        return None
    return tuple(sorted(set(desired.versions) | set(base.versions or ()) | set(labels.values())))


def _roll_back(name: str, base: Configured, record: dict[str, Any], why: str) -> Step:
    message = f"Model {name} {why}; rolled back to {base.describe()}"
    record = record | {"step": ROLLED_BACK, "message": message}
    return Step(base, record, ("Warning", "PromotionRolledBack", message), message)


# -- what `tfops promote` asks for --------------------------------------------


def promoted_model(raw_model: dict[str, Any], version: int, label: str | None) -> dict[str, Any]:
    """A model entry of the spec after promoting `version` (under `label`): served
    versions become the new one plus whatever other labels still pin."""
    labels = {str(k): int(v) for k, v in (raw_model.get("versionLabels") or {}).items()}
    if label:
        labels[label] = version
    changed = dict(raw_model)
    changed["versionPolicy"] = {"specific": sorted({version, *labels.values()})}
    if labels:
        changed["versionLabels"] = dict(sorted(labels.items()))
    return changed


def planned_steps(
    name: str, current: Configured, desired: Configured, grace_seconds: float
) -> list[str]:
    """The steps the operator takes from `current` to `desired`, in words."""
    if current == desired:
        return [f"nothing to do: model {name} already serves {desired.describe()}"]
    old_labels = current.label_map
    moving = {k: v for k, v in desired.labels if old_labels.get(k) != v}
    new_versions = sorted(set(desired.versions or ()) - set(current.versions or ()))
    retiring = sorted(
        set(current.versions or ()) - set(desired.versions or ()) - set(desired.label_map.values())
    )
    steps = []
    loading = sorted(set(new_versions) | set(moving.values()))
    if loading:
        keep = ", ".join(f"{k} on {old_labels[k]}" for k in moving if k in old_labels)
        steps.append(
            f"load version {', '.join(map(str, loading))} of {name} beside "
            f"{current.describe()}" + (f", labels staying put ({keep})" if keep else "")
        )
        steps.append(
            f"wait until version {', '.join(map(str, loading))} is AVAILABLE on every running "
            "pod (a failure or the time-out rolls back to the current config)"
        )
    if moving:
        steps.append("move " + ", ".join(f"label {k} to {v}" for k, v in sorted(moving.items())))
    if retiring:
        steps.append(
            f"after {grace_seconds:.0f}s, stop serving version {', '.join(map(str, retiring))}"
        )
    steps.append(f"serve {desired.describe()}")
    return steps
