"""Validators for the Kubernetes manifests under cluster/, each what a real component would check, without a cluster:

* ``core``: built-in kinds against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: unknown fields fail);
* ``crd``: custom resources against the operators' real CRD schemas (../shared/k8s-crds), with unknown fields
  rejected where the schema prunes them (the API server would drop them silently: a typo would be lost);
* ``cel``: the CRDs' ``x-kubernetes-validations`` rules, evaluated with cel-python (transition rules on ``oldSelf``
  apply to updates only and are skipped);
* ``kuberay``: the rules KubeRay checks only in its Go code (ray-operator/controllers/ray/utils/validation.go):
  upgrade options, deletion rules, fields it no longer reads;
* ``serve``: a RayService's serveConfigV2 against Ray Serve's own ServeDeploySchema;
* ``promtool``: a PrometheusRule's groups with ``promtool check rules``;
* ``pinned``: every image has a tag, never ``latest``.

Each returns a list of problems (empty: valid).
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CORE_GROUPS = {"", "apps", "batch", "networking.k8s.io", "rbac.authorization.k8s.io", "policy", "autoscaling"}
KUBERNETES_VERSION = "1.32.0"  # the kubectl on this machine; the oldest cluster the guide supports
# KubeRay 1.7 still lists these in the CRD but no longer reads them (FACTS; ray-operator's RayService controller)
KUBERAY_UNREAD = ("serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold")


def group(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


# --- core kinds ------------------------------------------------------------------------------------------------
def core(obj: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{_name(obj)}: {error.message} at {'.'.join(map(str, error.path))}"]
    return []


# --- custom resources --------------------------------------------------------------------------------------------
@cache
def crd_schemas(crds_dir: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> openAPIV3Schema, from every CRD file."""
    found = {}
    for path in sorted(crds_dir.rglob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    found[(spec["group"], version["name"], spec["names"]["kind"])] = version["schema"][
                        "openAPIV3Schema"]
    return found


def schema_for(obj: dict[str, Any], crds_dir: Path) -> dict[str, Any] | None:
    version = obj["apiVersion"].split("/")[-1]
    return crd_schemas(crds_dir).get((group(obj), version, obj["kind"]))


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Unknown fields rejected wherever the API server would prune them."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is validated by the API server itself, not by the CRD's schema
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def crd(obj: dict[str, Any], crds_dir: Path) -> list[str]:
    import jsonschema

    schema = schema_for(obj, crds_dir)
    if schema is None:
        return [f"{_name(obj)}: no served CRD for {obj['apiVersion']} {obj['kind']} in {crds_dir}"]
    validator = jsonschema.Draft7Validator(_strict(schema))
    return [f"{_name(obj)}: {e.message} at {'.'.join(map(str, e.absolute_path)) or '(root)'}"
            for e in validator.iter_errors(obj)]


def _rules(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, rule, the value it applies to) for every x-kubernetes-validations rule the value reaches."""
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], value
    if isinstance(value, dict):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                yield from _rules(schema["properties"][key], child, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from _rules(schema["additionalProperties"], child, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            yield from _rules(schema["items"], child, f"{path}[{index}]")


def cel(obj: dict[str, Any], crds_dir: Path) -> list[str]:
    import celpy

    schema = schema_for(obj, crds_dir)
    if schema is None:
        return []
    env, found = celpy.Environment(), []
    for path, rule, value in _rules(schema, obj):
        if "oldSelf" in rule:
            continue  # a transition rule: checked on update only
        result = env.program(env.compile(rule)).evaluate({"self": celpy.json_to_cel(value)})
        if not bool(result):
            found.append(f"{_name(obj)}: x-kubernetes-validations rule fails at {path or '(root)'}: {rule}")
    return found


# --- KubeRay's Go-only rules ---------------------------------------------------------------------------------------
def _autoscaling(cluster_spec: dict[str, Any] | None) -> bool:
    return bool(cluster_spec and cluster_spec.get("enableInTreeAutoscaling"))


def kuberay(obj: dict[str, Any]) -> list[str]:
    """ValidateRayServiceSpec / ValidateClusterUpgradeOptions / validateDeletionConfiguration, as KubeRay 1.7."""
    name, spec, found = _name(obj), obj.get("spec", {}), []
    if obj["kind"] == "RayService":
        found += [f"{name}: spec.{f} is no longer read by KubeRay" for f in KUBERAY_UNREAD if f in spec]
        strategy = spec.get("upgradeStrategy") or {}
        kind = strategy.get("type")
        if kind is not None and kind not in {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}:
            found.append(f"{name}: upgradeStrategy.type {kind!r} is not NewCluster, NewClusterWithIncrementalUpgrade "
                         "or None")
        if kind == "NewClusterWithIncrementalUpgrade":
            options = strategy.get("clusterUpgradeOptions")
            if not _autoscaling(spec.get("rayClusterConfig")):
                found.append(f"{name}: the incremental upgrade needs the Ray autoscaler (enableInTreeAutoscaling)")
            if options is None:
                found.append(f"{name}: the incremental upgrade needs clusterUpgradeOptions")
            else:
                surge, step = options.get("maxSurgePercent", 100), options.get("stepSizePercent")
                interval = options.get("intervalSeconds")
                if not 0 <= surge <= 100:
                    found.append(f"{name}: maxSurgePercent {surge} is not within 0-100")
                if step is None or not 0 <= step <= 100:
                    found.append(f"{name}: stepSizePercent {step} is not within 0-100")
                elif step > surge:
                    found.append(f"{name}: stepSizePercent {step} exceeds maxSurgePercent {surge}")
                if interval is None or interval <= 0:
                    found.append(f"{name}: intervalSeconds must be greater than 0")
                if not options.get("gatewayClassName"):
                    found.append(f"{name}: gatewayClassName is required for the incremental upgrade")
        if (spec.get("rayClusterDeletionDelaySeconds") or 0) < 0:
            found.append(f"{name}: rayClusterDeletionDelaySeconds must not be negative")
    if obj["kind"] == "RayJob":
        deletion = spec.get("deletionStrategy") or {}
        rules = deletion.get("deletionRules") or []
        if not spec.get("shutdownAfterJobFinishes") and spec.get("ttlSecondsAfterFinished", 0) > 0:
            found.append(f"{name}: ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
        if rules and spec.get("shutdownAfterJobFinishes"):
            found.append(f"{name}: shutdownAfterJobFinishes and deletionRules are mutually exclusive")
        if rules and ("onSuccess" in deletion or "onFailure" in deletion):
            found.append(f"{name}: legacy onSuccess/onFailure cannot be mixed with deletionRules")
        seen: dict[tuple[str, str], int] = {}
        for index, rule in enumerate(rules):
            condition = rule.get("condition", {})
            status = condition.get("jobStatus") or condition.get("jobDeploymentStatus")
            if rule.get("policy") == "DeleteWorkers" and _autoscaling(spec.get("rayClusterSpec")):
                found.append(f"{name}: deletionRules[{index}] DeleteWorkers is not supported with autoscaling")
            if (status, rule.get("policy")) in seen:
                found.append(f"{name}: deletionRules[{index}] duplicates a rule for {status} {rule.get('policy')}")
            seen[(status, rule.get("policy"))] = condition.get("ttlSeconds", 0)
        for status in {s for s, _ in seen}:  # a cluster cannot outlive the RayJob that owns it
            ttl = {policy: t for (s, policy), t in seen.items() if s == status}
            if "DeleteSelf" in ttl and ttl.get("DeleteCluster", 0) > ttl["DeleteSelf"]:
                found.append(f"{name}: {status}: DeleteCluster's TTL exceeds DeleteSelf's")
    return found


# --- Serve, Prometheus, images -----------------------------------------------------------------------------------
def serve(obj: dict[str, Any]) -> list[str]:
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    if obj["kind"] != "RayService":
        return []
    text = obj.get("spec", {}).get("serveConfigV2")
    if text is None:
        return [f"{_name(obj)}: no serveConfigV2"]
    try:
        ServeDeploySchema.model_validate(yaml.safe_load(text))
    except ValidationError as error:
        return [f"{_name(obj)}: serveConfigV2: {error}"]
    return []


def promtool(obj: dict[str, Any], promtool_bin: Path) -> list[str]:
    if obj["kind"] != "PrometheusRule":
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as rules:
        yaml.safe_dump({"groups": obj["spec"]["groups"]}, rules)
        rules.flush()
        result = subprocess.run([str(promtool_bin), "check", "rules", rules.name], capture_output=True, text=True,
                                timeout=60)
    return [] if result.returncode == 0 else [f"{_name(obj)}: promtool: {(result.stderr or result.stdout).strip()}"]


def images(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from images(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from images(value)


def pinned(obj: dict[str, Any]) -> list[str]:
    found = []
    for image in images(obj):
        reference = image.split("@")[0]
        tag = reference.rsplit(":", 1)[1] if ":" in reference.rsplit("/", 1)[-1] else None
        if "@sha256:" not in image and (tag is None or tag == "latest"):
            found.append(f"{_name(obj)}: image {image} is not pinned to a version")
    return found


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(obj: dict[str, Any], crds_dir: Path, promtool_bin: Path) -> dict[str, list[str]]:
    """Every validator that applies to ``obj`` -> its problems."""
    results = {"pinned": pinned(obj)}
    if group(obj) in CORE_GROUPS:
        results["core"] = core(obj)
    else:
        results["crd"] = crd(obj, crds_dir)
        results["cel"] = cel(obj, crds_dir)
        results["kuberay"] = kuberay(obj) if group(obj) == "ray.io" else []
        results["serve"] = serve(obj)
        results["promtool"] = promtool(obj, promtool_bin)
    return results
