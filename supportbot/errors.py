"""Every exception supportbot raises on purpose.

    SupportbotError                 base: a message a person can act on
    ├── ConfigError                 a bad setting; carries ``variable``
    ├── CatalogError                a bad asset entry (catalog, pricing, routing); carries ``entry``
    │   └── ScenarioError           a bad QA scenario file; ``entry`` is the file
    ├── AttachmentError             an upload we will not send; carries ``filename``
    │   ├── ImageRejected           not a usable image (corrupt, bomb, too large, wrong kind)
    │   └── LogRejected             not a usable log (binary, undecodable, over a cap)
    ├── ToolError                   a tool could not do its job; becomes an error result for the model
    ├── LimitReached                a spending bound refused a request; carries ``variable``, ``used``,
    │                               ``allowed`` and ``resets_at``
    └── ApiError                    the model service failed; carries ``kind`` and ``status``

Constructors only store data and format the message: no logging, no I/O.
"""

from __future__ import annotations


class SupportbotError(Exception):
    """Base of every deliberate supportbot error."""


class ConfigError(SupportbotError):
    """A setting has a bad value; ``variable`` names it (e.g. ``SUPPORTBOT_ENGINE``)."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


class CatalogError(SupportbotError):
    """An entry in an editable asset file is invalid; ``entry`` names it."""

    def __init__(self, entry: str, message: str) -> None:
        self.entry = entry
        super().__init__(f"{entry}: {message}")


class ScenarioError(CatalogError):
    """A QA scenario file is invalid; the message names the file and the field."""


class AttachmentError(SupportbotError):
    """An attachment was rejected; the message says why and what to do."""

    def __init__(self, filename: str, message: str) -> None:
        self.filename = filename
        super().__init__(f"{filename}: {message}")


class ImageRejected(AttachmentError):
    """An image could not be used (corrupt, not an image, too large, a decompression bomb)."""


class LogRejected(AttachmentError):
    """A log could not be used (binary, undecodable, over the size cap)."""


class ToolError(SupportbotError):
    """A tool failed in a way the model should hear about (e.g. order not found)."""


class LimitReached(SupportbotError):
    """A spending bound refused a turn or a request: which bound (``variable``), ``used`` of ``allowed``,
    and when it resets (``resets_at``, an ISO time, None for a per-turn bound)."""

    def __init__(self, variable: str, used: int, allowed: int, message: str, resets_at: str | None = None) -> None:
        self.variable = variable
        self.used = used
        self.allowed = allowed
        self.resets_at = resets_at
        super().__init__(message)


class ApiError(SupportbotError):
    """The model service failed.

    ``kind`` is one of: auth, forbidden, not_found, context_length, bad_request,
    rate_limit, server, timeout, connection, empty_stream, protocol.
    """

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        self.kind = kind
        self.status = status
        super().__init__(message)
