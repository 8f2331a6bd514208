"""Turns in worker processes (``SUPPORTBOT_TURN_WORKERS``): ``TurnPool`` runs them beside Gradio's loop.

``pool`` lives in the process that serves pages; ``process`` is the worker; ``state`` carries a
session between them. Layer: like the UI's handlers, it may import everything below the UI.
"""

from supportbot.workers.pool import RemoteRefusal, TurnPool

__all__ = ["RemoteRefusal", "TurnPool"]
