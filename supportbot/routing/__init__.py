"""Routing: which model takes a turn, and why.

Owns the editable model catalog (``catalog``: models, tiers, and what the plan and the service's
model list allow), the editable policy (``policy``: preferences, plans), the offline token
estimates (``tokens``) and the pure routing rules (``router``, choosing with ``candidates``).
It may import ``config``, ``errors``, ``events`` and ``vocabulary``; nothing here does I/O beyond
reading its asset files once, and nothing here imports the SDK, Gradio or the offline engine.
"""
