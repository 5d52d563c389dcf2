"""Validators for the Kubernetes manifests under cluster/, each what a real component would check, without a cluster:

* ``core``: built-in kinds against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: unknown fields fail);
* ``crd``: custom resources against the operators' real CRD schemas (KubeRay's and the Prometheus operator's of the
  versions built for the local control plane, Strimzi's and the Spark operator's from ../shared), unknown fields
  rejected where the schema prunes them (the API server would drop them silently: a typo would be lost);
* ``cel``: the CRDs' ``x-kubernetes-validations`` rules, evaluated with cel-python (transition rules on ``oldSelf``
  apply to updates only and are skipped);
* ``kuberay``: what KubeRay ignores without a word (fields it no longer reads); the rules it reports are its own
  verdict on a real control plane (tests/integration/test_kubernetes.py);
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
class _CrdLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.1's ``=`` (the "value" type) read as the plain string it is in the Prometheus operator's CRDs.
    libyaml's parser when PyYAML has it: the pure-Python one took ~7 s of CPU over the 4.7 MB of CRDs, libyaml ~1 s."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


@cache
def crd_schemas(crds_dir: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> openAPIV3Schema, from every CRD file."""
    found = {}
    for path in sorted(crds_dir.rglob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=_CrdLoader):  # a SafeLoader
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
def kuberay(obj: dict[str, Any]) -> list[str]:
    """What KubeRay checks but never reports: fields it no longer reads (its CRD still accepts them, the operator
    ignores them silently). Every rule it does report (validation.go: upgrade options, deletion rules, names) is
    left to the operator itself: tests/integration/test_kubernetes.py applies broken resources to a real KubeRay
    and asserts its own InvalidRayServiceSpec / InvalidRayJobSpec verdict."""
    spec = obj.get("spec", {})
    if obj["kind"] != "RayService":
        return []
    return [f"{_name(obj)}: spec.{f} is no longer read by KubeRay" for f in KUBERAY_UNREAD if f in spec]


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


# --- the overlays as an operator builds them ---------------------------------------------------------------------
SECRET_PLACEHOLDER = "test-only-not-a-secret"  # pragma: allowlist secret


def render_overlays(cluster_dir: Path, work: Path, overlays: tuple[str, ...]) -> dict[str, str]:
    """Each overlay's YAML (`kubectl kustomize`), from a copy of ``cluster_dir`` in ``work`` whose git-ignored secret
    env files are made from their examples."""
    import shutil

    copy = work / "cluster"
    shutil.copytree(cluster_dir, copy)
    for example in copy.glob("overlays/*/secrets/*.env.example"):
        lines = [f"{line}{SECRET_PLACEHOLDER}" if line.endswith("=") else line
                 for line in example.read_text().splitlines()]
        example.with_suffix("").write_text("\n".join(lines) + "\n")
    built = {}
    for overlay in overlays:
        result = subprocess.run(["kubectl", "kustomize", str(copy / "overlays" / overlay)], capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"kubectl kustomize {overlay}: {result.stderr}")
        built[overlay] = result.stdout
    return built
