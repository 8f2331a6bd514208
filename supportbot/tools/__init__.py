"""Tools the agent can call: the registry (``registry``) and the support tools (``support``).

The package's public names are what the agent and tests use: ``REGISTRY`` holds every
support tool. It may import ``errors``, ``vocabulary`` and ``storage``; never the SDK,
Gradio or the engine.
"""

from supportbot.tools.registry import ToolContext, ToolRegistry, ToolResult
from supportbot.tools.support import REGISTRY, days_late, refund_decision

__all__ = ["REGISTRY", "ToolContext", "ToolRegistry", "ToolResult", "days_late", "refund_decision"]
