"""Configuration from the environment, read once per process (``get_settings``).

Secrets are ``SecretStr``: they print as ``**********`` and never reach logs or messages.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A list read from one environment variable as ``a,b,c`` (JSON lists work too).
CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # --- storage -----------------------------------------------------------------------------
    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    data_dir: Path = Field(default=Path(".onbrand"), alias="ONBRAND_DATA_DIR")
    presets_dir: Path = Field(default=Path("presets"), alias="ONBRAND_PRESETS_DIR")
    image_store: str = Field(default="", alias="ONBRAND_IMAGE_STORE")
    # S3-compatible image storage (ONBRAND_IMAGE_STORE=s3://bucket/prefix). Credentials may also
    # come from boto3's usual chain (instance profile, IRSA, ~/.aws) when these are unset.
    s3_endpoint_url: str | None = Field(default=None, alias="ONBRAND_S3_ENDPOINT_URL")
    aws_access_key_id: SecretStr | None = Field(default=None, alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(default=None, alias="AWS_SECRET_ACCESS_KEY")
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )

    # --- operations --------------------------------------------------------------------------
    # single: bots and workers share one machine (and the local image directory);
    # distributed: workers run elsewhere, so images must live in shared (S3) storage.
    deployment: Literal["single", "distributed"] = Field(
        default="single", alias="ONBRAND_DEPLOYMENT"
    )
    metrics_port: int | None = Field(default=None, alias="ONBRAND_METRICS_PORT", ge=1, le=65535)
    metrics_host: str = Field(default="0.0.0.0", alias="ONBRAND_METRICS_HOST")
    shutdown_grace_s: float = Field(default=30.0, alias="ONBRAND_SHUTDOWN_GRACE_S", gt=0)
    run_worker: bool = Field(default=True, alias="ONBRAND_RUN_WORKER")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", alias="ONBRAND_LOG_LEVEL"
    )
    log_format: Literal["auto", "json", "text"] = Field(default="auto", alias="ONBRAND_LOG_FORMAT")

    # --- brand policy ------------------------------------------------------------------------
    default_preset: str = Field(default="acme-spring", alias="ONBRAND_DEFAULT_PRESET")
    banned_terms: CommaList = Field(default_factory=list, alias="ONBRAND_BANNED_TERMS")

    # --- roles: comma-separated "platform:user-id" entries -------------------------------------
    admins: CommaList = Field(default_factory=list, alias="ONBRAND_ADMINS")
    reviewers: CommaList = Field(default_factory=list, alias="ONBRAND_REVIEWERS")

    # --- worker ------------------------------------------------------------------------------
    device: Literal["auto", "cuda", "mps", "cpu"] = Field(default="auto", alias="ONBRAND_DEVICE")
    max_batch: int | None = Field(default=None, alias="ONBRAND_MAX_BATCH", ge=1, le=64)
    batch_window_ms: int = Field(default=25, alias="ONBRAND_BATCH_WINDOW_MS", ge=0)
    heartbeat_timeout_s: float = Field(default=30.0, alias="ONBRAND_HEARTBEAT_TIMEOUT", gt=0)
    max_attempts: int = Field(default=3, alias="ONBRAND_MAX_ATTEMPTS", ge=1)
    # processes that finish images (core.jobs.finishers): unset, one per core; 0, threads instead
    finishing_processes: int | None = Field(
        default=None, alias="ONBRAND_FINISHING_PROCESSES", ge=0, le=256
    )

    # --- memory ------------------------------------------------------------------------------
    # A CLIP model for vector search (core.memory.embedder): a local folder or a Hugging Face
    # id already in the cache (never downloaded). Unset: search is keyword + perceptual hash.
    embedder: str = Field(default="", alias="ONBRAND_EMBEDDER")
    embedder_device: Literal["cpu", "cuda", "mps"] = Field(
        default="cpu", alias="ONBRAND_EMBEDDER_DEVICE"
    )

    # --- platforms ---------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_api_url: str | None = Field(default=None, alias="SLACK_API_URL")
    discord_token: SecretStr | None = Field(default=None, alias="DISCORD_TOKEN")
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="DISCORD_GUILD_IDS"
    )
    discord_api_base: str | None = Field(default=None, alias="DISCORD_API_BASE")
    discord_gateway_url: str | None = Field(default=None, alias="DISCORD_GATEWAY_URL")
    http_host: str = Field(default="127.0.0.1", alias="ONBRAND_HTTP_HOST")
    http_port: int = Field(default=3000, alias="ONBRAND_HTTP_PORT")

    # --- provenance (docs/provenance.md) ------------------------------------------------------
    # The C2PA signer: the operator's certificate chain (leaf first) and key, as files or PEM
    # text. Unset: a local CA and signer made once in $ONBRAND_DATA_DIR/provenance.
    c2pa_cert: Path | None = Field(default=None, alias="ONBRAND_C2PA_CERT")
    c2pa_key: Path | None = Field(default=None, alias="ONBRAND_C2PA_KEY")
    c2pa_cert_pem: str | None = Field(default=None, alias="ONBRAND_C2PA_CERT_PEM")
    c2pa_key_pem: SecretStr | None = Field(default=None, alias="ONBRAND_C2PA_KEY_PEM")
    c2pa_alg: Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"] = Field(
        default="es256", alias="ONBRAND_C2PA_ALG"
    )
    c2pa_tsa_url: str | None = Field(default=None, alias="ONBRAND_C2PA_TSA_URL")
    c2pa_trust: Path | None = Field(default=None, alias="ONBRAND_C2PA_TRUST")
    # The watermark's MAC key (at least 16 characters); unset: made once in the data directory.
    # Workers on other machines must share it (set it everywhere) or their marks won't verify.
    watermark_secret: SecretStr | None = Field(default=None, alias="ONBRAND_WATERMARK_SECRET")

    # --- product shots (docs/images-in.md) ----------------------------------------------------
    # A learned matting model (an ONNX file in a local folder) instead of the key-out; unset:
    # the key-out from the photo's borders. Checked at start-up and by `onbrand doctor`.
    matting_model: Path | None = Field(default=None, alias="ONBRAND_MATTING_MODEL")

    # --- engines -----------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")

    @field_validator("banned_terms", "admins", "reviewers", "discord_guild_ids", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        """Accept ``a,b,c`` in the environment as well as JSON lists."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("metrics_port", "matting_model", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "slack_signing_secret", "slack_app_token", "slack_bot_token", "discord_token", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """An empty secret verifies nothing: ``SLACK_SIGNING_SECRET=`` counts as unset (and so
        do the chat tokens, which compose passes on as ``${SLACK_BOT_TOKEN:-}``)."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        scheme = value.get_secret_value().split("://", 1)[0]
        if scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ValueError(
                f"DATABASE_URL must be a PostgreSQL URL (postgresql:// or postgresql+asyncpg://), "
                f"not {scheme}://"
            )
        return value

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None

    @property
    def discord_enabled(self) -> bool:
        return self.discord_token is not None

    def secret_values(self) -> list[str]:
        """Every configured secret (and a database URL's password), for the log masker."""
        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and (secret := value.get_secret_value()):
                values.append(secret)
                if "://" in secret:
                    from urllib.parse import unquote, urlsplit

                    password = urlsplit(secret).password
                    if password:
                        values += [password, unquote(password)]
        return values

    def masked(self) -> dict[str, str]:
        """The effective configuration for display: secrets and URL passwords masked."""
        shown: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            key = field.alias or name
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                shown[key] = mask_url(secret) if "://" in secret else "********"
            elif isinstance(value, list):
                shown[key] = ", ".join(map(str, value)) or "(unset)"
            elif value is None:
                shown[key] = "(unset)"
            else:
                shown[key] = str(value)
        return shown


def mask_url(url: str) -> str:
    """``postgresql://user:pw@host/db`` → ``postgresql://user:****@host/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:****@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
