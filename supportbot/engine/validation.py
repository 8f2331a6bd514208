"""Chat-completions request validation, as a real OpenAI-compatible server does it.

Pure: a request body in, nothing out, or :class:`~supportbot.engine.protocol.RequestInvalid`
(400) carrying the OpenAI error fields.
"""

from __future__ import annotations

from typing import Any

from supportbot.engine.protocol import RequestInvalid

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file"})


def validate_chat(body: Any) -> None:
    """Raise RequestInvalid (400) when ``body`` is not a valid chat-completions request."""
    if not isinstance(body, dict):
        raise RequestInvalid(400, "The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestInvalid(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestInvalid(400, "'messages' must be a non-empty array.", param="messages")
    pending: set[str] = set()  # tool call ids still waiting for their tool message
    seen: set[str] = set()
    for i, msg in enumerate(messages):
        where = f"messages.[{i}]"
        if not isinstance(msg, dict):
            raise RequestInvalid(400, f"{where} must be an object.", param=where)
        role = msg.get("role")
        if role not in ROLES:
            raise RequestInvalid(
                400,
                f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', "
                "'user', 'tool', 'function' and 'developer'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        if pending and role != "tool":
            raise RequestInvalid(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(sorted(pending))}",
                param=where,
            )
        _validate_content(msg.get("content"), where, role)
        if role == "assistant":
            for j, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not fn.get("name") or not call.get("id"):
                    raise RequestInvalid(
                        400, "Each tool call needs an id and a function name.", param=f"{where}.tool_calls.[{j}]"
                    )
                pending.add(call["id"])
                seen.add(call["id"])
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not call_id or call_id not in seen:
                raise RequestInvalid(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"{where}.role",
                )
            pending.discard(call_id)
    if pending:
        raise RequestInvalid(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages "
            f"responding to each 'tool_call_id'. Missing: {', '.join(sorted(pending))}",
            param="messages",
        )
    _validate_options(body)


def _validate_content(content: Any, where: str, role: str) -> None:
    if content is None or isinstance(content, str):
        if content is None and role in ("user", "system", "developer"):
            raise RequestInvalid(
                400, f"Invalid value for '{where}.content': expected a string or an array.", param=f"{where}.content"
            )
        return
    if not isinstance(content, list):
        raise RequestInvalid(400, f"Invalid type for '{where}.content'.", param=f"{where}.content")
    for k, part in enumerate(content):
        p = f"{where}.content.[{k}]"
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
            raise RequestInvalid(400, f"Invalid content part type at '{p}'.", param=f"{p}.type", code="invalid_value")
        if part["type"] == "image_url":
            url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
            if not isinstance(url, str) or not url.startswith(("data:image/", "http://", "https://")):
                raise RequestInvalid(
                    400,
                    f"Invalid image_url at '{p}': expected a data URL or an http(s) URL.",
                    param=f"{p}.image_url.url",
                )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise RequestInvalid(400, f"Missing text at '{p}'.", param=f"{p}.text")


def _validate_options(body: dict) -> None:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestInvalid(400, "'tools' must be an array.", param="tools")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(fn, dict)
                or not fn.get("name")
            ):
                raise RequestInvalid(
                    400, f"Invalid tool at tools[{i}]: expected a function with a name.", param=f"tools[{i}]"
                )
            names.add(fn["name"])
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        raise RequestInvalid(400, f"Invalid value for 'tool_choice': {choice!r}.", param="tool_choice")
    if choice == "required" and not names:
        raise RequestInvalid(400, "tool_choice 'required' needs 'tools'.", param="tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            raise RequestInvalid(400, f"Invalid tool_choice: no tool named {name!r} in 'tools'.", param="tool_choice")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise RequestInvalid(400, f"Invalid '{key}': expected an integer of at least 1.", param=key)
    if body.get("stream_options") is not None and not body.get("stream"):
        raise RequestInvalid(
            400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            raise RequestInvalid(400, "Invalid 'response_format.type'.", param="response_format.type")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not spec.get("name") or not isinstance(spec.get("schema", {}), dict):
                raise RequestInvalid(
                    400,
                    "'response_format.json_schema' needs a name and a schema object.",
                    param="response_format.json_schema",
                )
