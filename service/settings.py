"""Service settings, read from `PREDICT_*` environment variables (and nowhere else)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.manifest import LOAD_TIMEOUT_SECONDS, MAX_MODEL_BYTES

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Everything an operator may tune; the defaults serve the committed models on loopback."""

    model_config = SettingsConfigDict(env_prefix="PREDICT_", extra="ignore", frozen=True)

    models_dir: Path = Path("models")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # The Open Inference Protocol over gRPC (service.api.grpc_v2), on the same host; 0: off.
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    ort_threads: int = Field(default=1, ge=0, le=64)
    max_batch_records: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=64 * MIB, ge=1024)
    # JSON costs up to ~30x its size once parsed into Python objects, so it gets a tighter limit
    # than CSV (which streams); 10,000 records of the widest model (digits) are about 10 MB.
    max_json_body_bytes: int = Field(default=16 * MIB, ge=1024)
    admin_token: SecretStr | None = None
    poll_interval_seconds: float = Field(default=2.0, ge=0.0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cors_origins: Annotated[list[str], NoDecode] = []
    api_keys: Annotated[list[SecretStr], NoDecode] = []
    body_timeout_seconds: float = Field(default=60.0, gt=0.0)
    graceful_timeout_seconds: int = Field(default=30, ge=1)
    # Connections one worker holds open at once (idle and half-open ones too); past it a new
    # connection gets a 503 and is closed. Keep it below the process's open-file limit.
    max_connections: int = Field(default=512, ge=1)
    # A model file larger than this is refused before it is read (each worker reads it whole).
    max_model_bytes: int = Field(default=MAX_MODEL_BYTES, ge=1024)
    # A version must load and pass its self-check within this long, else it is refused; other
    # tasks never wait for it.
    load_timeout_seconds: float = Field(default=LOAD_TIMEOUT_SECONDS, gt=0.0)
    # Drift (GET /v1/models/{task}/drift): a feature's PSI from `drift_watch` up is "watch",
    # from `drift_alert` up "drifted".
    drift_watch: float = Field(default=0.1, gt=0.0)
    drift_alert: float = Field(default=0.25, gt=0.0)

    @property
    def json_body_limit(self) -> int:
        """The byte limit for a JSON body: the JSON limit, never above the general one."""
        return min(self.max_json_body_bytes, self.max_body_bytes)

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        """`PREDICT_ADMIN_TOKEN=` (set but empty) switches admin off; "" is never a token."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_origins", "api_keys", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """Accept `a,b` from the environment as well as a list from Python; blanks are dropped."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
