"""Settings: one validated object, read from overrides, the environment and `.env`.

Precedence, highest first:
1. keyword overrides passed to :meth:`Settings.load` (tests, scripts);
2. the process environment (a Space's secrets arrive here);
3. a `.env` file in the working directory (or the path given);
4. on a Hugging Face Space (``SPACE_ID`` set), ``SPACE_DEFAULTS``: spending bounds, retention and one
   trusted proxy hop, because strangers share the app and the owner's key there;
5. the defaults below (no bounds: a local run is one person's).

A bad value raises :class:`~supportbot.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from supportbot.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR.parent / "assets"
DEFAULT_BASE_URL = "https://api.oxlo.ai/v1"
SPACE_STORAGE = Path("/data")  # a Space's persistent storage, when the owner has added it

# field name -> environment variable; the variables are a public promise.
ENV_VARS: dict[str, str] = {
    "api_key": "OXLO_API_KEY",
    "base_url": "OXLO_BASE_URL",
    "engine": "SUPPORTBOT_ENGINE",
    "data_dir": "SUPPORTBOT_DATA_DIR",
    "database_url": "SUPPORTBOT_DATABASE_URL",
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
    "record_path": "SUPPORTBOT_RECORD",
    "cassette_path": "SUPPORTBOT_CASSETTE",
    "visitor_requests_per_day": "SUPPORTBOT_VISITOR_REQUESTS_PER_DAY",
    "requests_per_day": "SUPPORTBOT_REQUESTS_PER_DAY",
    "max_input_tokens_per_turn": "SUPPORTBOT_MAX_INPUT_TOKENS_PER_TURN",
    "allow_extraction": "SUPPORTBOT_ALLOW_EXTRACTION",
    "require_login": "SUPPORTBOT_REQUIRE_LOGIN",
    "trusted_proxies": "SUPPORTBOT_TRUSTED_PROXIES",
    "queue_size": "SUPPORTBOT_QUEUE_SIZE",
    "max_text_chars": "SUPPORTBOT_MAX_TEXT_CHARS",
    "confirm_tools": "SUPPORTBOT_CONFIRM_TOOLS",
    "turn_workers": "SUPPORTBOT_TURN_WORKERS",
}

# Cores this process may use (its CPU affinity), at most 4: turn workers on a Space, image decodes at once.
USABLE_CORES = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

# Applied on a Space (SPACE_ID set) to settings the owner did not give; 0 switches a bound off.
SPACE_DEFAULTS: dict[str, Any] = {
    "visitor_requests_per_day": 200,
    "requests_per_day": 2000,
    "max_input_tokens_per_turn": 200_000,
    "allow_extraction": False,
    "trusted_proxies": 1,  # the Space's own proxy appends the visitor's address to X-Forwarded-For
    "retention_days": 30,
    # A stranger's refund or escalation waits for a click: the owner's demo shop, the owner's key.
    "confirm_tools": ("request_refund", "escalate_to_human"),
    # Turns run beside the process that serves pages (see supportbot.workers), one worker per core:
    # with one, that worker's CPU became the limit at ~50 turns at once on 2 cores (bench/concurrency.py).
    "turn_workers": USABLE_CORES,
}
# Never echoed in a validation message: they hold secrets.
_SECRET_FIELDS = ("api_key", "database_url")
# Waiting chat events allowed per running one before the queue refuses more ("busy, try again").
QUEUE_PER_SLOT = 2


def on_space(env: Mapping[str, str]) -> bool:
    """Whether we run on a Hugging Face Space."""
    return env.get("SYSTEM") == "spaces" or bool(env.get("SPACE_ID"))


def default_data_dir(env: Mapping[str, str] | None = None, space_storage: Path = SPACE_STORAGE) -> Path:
    """Where the database lives when SUPPORTBOT_DATA_DIR is unset.

    Never under the working directory or the temp dir: Gradio may serve any file from either. On a
    Space, its persistent storage (``/data``) when present and writable, so conversations survive a
    restart; otherwise ``$XDG_DATA_HOME/supportbot``, i.e. ``~/.local/share/supportbot``.
    """
    env = os.environ if env is None else env
    if on_space(env) and space_storage.is_dir() and os.access(space_storage, os.W_OK):
        return space_storage / "supportbot"
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative one
        return Path(xdg) / "supportbot"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "supportbot"


class Settings(BaseModel):
    """Everything configurable, validated; see ENV_VARS for the variable names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    # "replay" answers from a recorded cassette (cassette_path) through the same SDK path.
    engine: Literal["auto", "live", "offline", "replay"] = "auto"
    data_dir: Path = Field(default_factory=default_data_dir)
    # Unset: SQLite in data_dir (one process). postgresql://…: a database several replicas share.
    # A secret (it may hold a password): never shown whole, see redacted_database_url.
    database_url: SecretStr | None = None
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
    retention_days: int | None = Field(None, ge=0)  # 0 or unset: keep forever
    concurrency_limit: int = Field(64, ge=1, le=1024)
    # Append every request and response to this JSON-lines file (never the key or headers).
    record_path: Path | None = None
    cassette_path: Path | None = None
    # Spending bounds; None or 0 = no bound. Counted per UTC day in the database.
    visitor_requests_per_day: int | None = Field(None, ge=0)
    requests_per_day: int | None = Field(None, ge=0)
    max_input_tokens_per_turn: int | None = Field(None, ge=0)
    allow_extraction: bool | None = None  # None: allowed (on a Space the default is False)
    require_login: bool = False
    trusted_proxies: int = Field(0, ge=0, le=10)
    queue_size: int | None = Field(None, ge=1, le=100_000)
    # Typed text longer than this becomes a log attachment when it reads as a log, else it is refused.
    max_text_chars: int = Field(200_000, ge=1_000, le=100_000_000)
    # Tools the agent pauses before, until a human approves or denies the call; "none" for none. The names
    # are checked against the tool registry when the agent is made (ConfigError naming the unknown one).
    confirm_tools: tuple[str, ...] = ()
    # Worker processes that run turns (the SDK, agent loop and tools) beside Gradio's loop; 0: in process.
    turn_workers: int = Field(0, ge=0, le=16)

    @field_validator("confirm_tools", mode="before")
    @classmethod
    def _tool_list(cls, value: Any) -> Any:
        """'request_refund, escalate_to_human' -> a tuple of names; 'none' -> none."""
        if isinstance(value, str):
            names = [n.strip() for n in value.split(",") if n.strip()]
            value = [] if [n.lower() for n in names] == ["none"] else names
        return tuple(dict.fromkeys(value)) if isinstance(value, list | tuple) else value

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
        raw.setdefault("data_dir", default_data_dir(env))
        raw.update(overrides or {})
        if env.get("SPACE_ID"):
            raw = {**SPACE_DEFAULTS, **raw}
        try:
            return cls(**raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "?"
            var = ENV_VARS.get(field, field)
            shown = "" if field in _SECRET_FIELDS else f" (got {raw.get(field)!r})"
            raise ConfigError(var, f"{err['msg']}{shown}") from None

    @property
    def live(self) -> bool:
        """Whether requests go to the configured service rather than the offline engine."""
        if self.engine == "auto":
            return self.api_key is not None
        return self.engine == "live"

    @property
    def extraction_allowed(self) -> bool:
        """Whether visitors may use extraction ticket mode (1-2 extra requests a turn)."""
        return self.allow_extraction is not False

    @property
    def queue_max_size(self) -> int:
        """How many chat events may wait for a slot before the queue refuses more."""
        return self.queue_size or QUEUE_PER_SLOT * self.concurrency_limit

    def check(self) -> None:
        """Raise ConfigError for combinations no single field can catch."""
        if self.ticket_mode == "extraction" and not self.extraction_allowed:
            raise ConfigError(
                "SUPPORTBOT_ALLOW_EXTRACTION",
                "is off (the default on a Space) but SUPPORTBOT_TICKET_MODE=extraction; set it to 1, "
                "or use SUPPORTBOT_TICKET_MODE=inline",
            )
        if self.engine == "live" and self.api_key is None:
            raise ConfigError("OXLO_API_KEY", "SUPPORTBOT_ENGINE=live needs an API key")
        if self.engine == "replay":
            if self.cassette_path is None:
                needs = "SUPPORTBOT_ENGINE=replay needs a cassette: a file recorded with SUPPORTBOT_RECORD"
                raise ConfigError("SUPPORTBOT_CASSETTE", needs)
            if not Path(self.cassette_path).is_file():
                raise ConfigError("SUPPORTBOT_CASSETTE", f"no such file: {self.cassette_path}")
        if self.database_url is not None:
            scheme, sep, _ = self.database_url.get_secret_value().partition("://")
            if not sep or scheme.lower() not in ("postgresql", "postgres"):
                raise ConfigError(
                    "SUPPORTBOT_DATABASE_URL",
                    "must be a postgresql://user:password@host:port/database URL, or unset for SQLite in "
                    "SUPPORTBOT_DATA_DIR",
                )
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
