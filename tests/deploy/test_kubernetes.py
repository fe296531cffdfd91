"""The Kubernetes manifests validate offline against the Kubernetes schemas."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, require_tool

MANIFESTS = sorted(
    p for p in (ROOT / "deploy" / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml"
)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path) -> None:
    result = subprocess.run(
        [require_tool("kubernetes-validate"), "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_a_typo(tmp_path: Path) -> None:
    broken = (ROOT / "deploy" / "kubernetes" / "service.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(broken.replace("targetPort:", "targetPrt:"))
    result = subprocess.run(
        [require_tool("kubernetes-validate"), "--strict", str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0


def test_deployment_probes_and_security() -> None:
    docs = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    pod = docs["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] and container["resources"]["requests"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert mount["readOnly"] is True


# Applied by hand when there is something to do (a file to score), never with the rest.
ON_DEMAND = {"job-score-spark.yaml"}


def test_kustomization_lists_every_manifest_but_the_on_demand_jobs() -> None:
    kustomization = yaml.safe_load(
        (ROOT / "deploy" / "kubernetes" / "kustomization.yaml").read_text()
    )
    standing = [p.name for p in MANIFESTS if p.name not in ON_DEMAND]
    assert sorted(kustomization["resources"]) == standing
    assert {p.name for p in MANIFESTS} >= ON_DEMAND
