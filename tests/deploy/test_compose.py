"""docker-compose.yml is valid for a real compose implementation, in every profile."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .conftest import ROOT, require_tool

PROFILES = ["", "train", "scale", "monitoring"]


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_config_is_valid(profile: str) -> None:
    args = [require_tool("docker-compose")]
    if profile:
        args += ["--profile", profile]
    result = subprocess.run(
        [*args, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_compose_topology() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    api, trainer = services["api"], services["trainer"]
    assert api["build"]["target"] == "serve" and trainer["build"]["target"] == "train"
    assert "./models:/app/models:ro" in api["volumes"]
    assert "./models:/app/models" in trainer["volumes"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["restart"] == "unless-stopped" and api["deploy"]["resources"]["limits"]
    assert "profiles" not in api  # `docker compose up` alone serves
    assert trainer["profiles"] == ["train"]
    assert services["lb"]["profiles"] == ["scale"]
    assert services["prometheus"]["profiles"] == ["monitoring"]


def test_env_example_names_real_settings() -> None:
    from service.settings import Settings

    fields = {f"PREDICT_{name.upper()}" for name in Settings.model_fields}
    names = {
        line.split("=")[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {n for n in names if n.startswith("PREDICT_")} <= fields
