"""Settings: one validated object, read from overrides, the environment and `.env`.

Precedence, highest first:
1. keyword overrides passed to :meth:`Settings.load` (tests, scripts);
2. the process environment (a Space's secrets arrive here);
3. a `.env` file in the working directory (or the path given);
4. the defaults below.

A bad value raises :class:`~supportbot.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from supportbot.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR.parent / "assets"
DEFAULT_BASE_URL = "https://api.oxlo.ai/v1"

# field name -> environment variable; the variables are a public promise.
ENV_VARS: dict[str, str] = {
    "api_key": "OXLO_API_KEY",
    "base_url": "OXLO_BASE_URL",
    "engine": "SUPPORTBOT_ENGINE",
    "data_dir": "SUPPORTBOT_DATA_DIR",
    "max_tool_steps": "SUPPORTBOT_MAX_TOOL_STEPS",
    "request_timeout": "SUPPORTBOT_REQUEST_TIMEOUT",
    "max_output_tokens": "SUPPORTBOT_MAX_OUTPUT_TOKENS",
    "max_retries": "SUPPORTBOT_MAX_RETRIES",
    "catalog_path": "SUPPORTBOT_CATALOG",
    "max_upload_mb": "SUPPORTBOT_MAX_UPLOAD_MB",
    "max_gz_expanded_mb": "SUPPORTBOT_MAX_GZ_EXPANDED_MB",
    "max_images_per_turn": "SUPPORTBOT_MAX_IMAGES",
    "ticket_mode": "SUPPORTBOT_TICKET_MODE",
    "plan": "SUPPORTBOT_PLAN",
    "retention_days": "SUPPORTBOT_RETENTION_DAYS",
    "concurrency_limit": "SUPPORTBOT_CONCURRENCY",
    "max_text_chars": "SUPPORTBOT_MAX_TEXT_CHARS",
}


class Settings(BaseModel):
    """Everything configurable, validated; see ENV_VARS for the variable names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    engine: Literal["auto", "live", "offline"] = "auto"
    data_dir: Path = Path("data")
    max_tool_steps: int = Field(6, ge=1, le=50)
    request_timeout: float = Field(60.0, gt=0, le=600)
    max_output_tokens: int = Field(1024, ge=16, le=32768)
    # Attempts per request = 1 + max_retries, all made by the SDK (it backs off and
    # honours Retry-After on 408/409/429/5xx); the agent itself never retries.
    max_retries: int = Field(2, ge=0, le=5)
    catalog_path: Path = ASSETS_DIR / "models.json"
    max_upload_mb: int = Field(50, ge=1, le=1024)
    max_gz_expanded_mb: int = Field(200, ge=1, le=4096)
    max_images_per_turn: int = Field(4, ge=1, le=16)
    ticket_mode: Literal["inline", "extraction"] = "inline"
    plan: str = "pro"
    retention_days: int | None = Field(None, ge=1)
    concurrency_limit: int = Field(64, ge=1, le=1024)
    # Typed text longer than this becomes a log attachment when it reads as a log, else it is refused.
    max_text_chars: int = Field(200_000, ge=1_000, le=100_000_000)

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        dotenv_path: str | Path | None = ".env",
    ) -> Settings:
        """Build settings from overrides > environment > .env > defaults."""
        env = dict(os.environ if environ is None else environ)
        file_values = {}
        if dotenv_path is not None and Path(dotenv_path).is_file():
            file_values = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
        raw: dict[str, Any] = {}
        for field, var in ENV_VARS.items():
            value = env.get(var, file_values.get(var))
            if value is not None and str(value).strip() != "":
                raw[field] = str(value).strip()
        raw.update(overrides or {})
        try:
            return cls(**raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "?"
            var = ENV_VARS.get(field, field)
            shown = "" if field == "api_key" else f" (got {raw.get(field)!r})"
            raise ConfigError(var, f"{err['msg']}{shown}") from None

    @property
    def live(self) -> bool:
        """Whether requests go to the configured service rather than the offline engine."""
        if self.engine == "auto":
            return self.api_key is not None
        return self.engine == "live"

    def check(self) -> None:
        """Raise ConfigError for combinations no single field can catch."""
        if self.engine == "live" and self.api_key is None:
            raise ConfigError("OXLO_API_KEY", "SUPPORTBOT_ENGINE=live needs an API key")
        if self.live and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError("OXLO_BASE_URL", f"must start with http:// or https:// (got {self.base_url!r})")


# A run of the key's first characters this long is masked too: enough of a key to matter.
REDACT_PREFIX_CHARS = 8


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` masked as ``***``: every occurrence, and every run of its first
    ``REDACT_PREFIX_CHARS`` or more characters (a key cut off by a truncation, or echoed in part).

    The one place the key is masked: apply it to every message shown, stored, logged or exported,
    and before any truncation (a cut can split the key and leave a prefix no full match finds)."""
    if not secret or len(secret) < 4:
        return text
    if len(secret) < REDACT_PREFIX_CHARS:
        return text.replace(secret, "***")
    head = secret[:REDACT_PREFIX_CHARS]
    out: list[str] = []
    pos = 0
    while (at := text.find(head, pos)) >= 0:
        end = at + len(head)
        while end - at < len(secret) and end < len(text) and text[end] == secret[end - at]:
            end += 1  # the match goes on as far as the text keeps following the key
        out += [text[pos:at], "***"]
        pos = end
    out.append(text[pos:])
    return "".join(out)
