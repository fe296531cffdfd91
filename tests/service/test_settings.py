"""Settings come from PREDICT_* variables only, with safe defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_defaults_serve_the_committed_models_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODELS_DIR", "HOST", "PORT", "ADMIN_TOKEN", "CORS_ORIGINS"):
        monkeypatch.delenv(f"PREDICT_{name}", raising=False)
    settings = Settings()
    assert (settings.models_dir, settings.host, settings.port) == (
        Path("models"),
        "127.0.0.1",
        8000,
    )
    assert (settings.workers, settings.ort_threads, settings.max_batch_records) == (1, 1, 10_000)
    assert settings.admin_token is None and settings.cors_origins == []
    assert settings.poll_interval_seconds == 2.0


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICT_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("PREDICT_PORT", "9000")
    monkeypatch.setenv("PREDICT_CORS_ORIGINS", "http://a.test, http://b.test")
    monkeypatch.setenv("PREDICT_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("PREDICT_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.models_dir == Path("/srv/models") and settings.port == 9000
    assert settings.cors_origins == ["http://a.test", "http://b.test"]
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.log_level == "DEBUG"


def test_an_empty_admin_token_switches_admin_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICT_ADMIN_TOKEN", "  ")
    assert Settings().admin_token is None


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICT_MAX_BATCH_RECORDS", "0")
    with pytest.raises(ValidationError, match="max_batch_records"):
        Settings()
