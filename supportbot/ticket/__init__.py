"""The structured support ticket: its schema and inline building (``record``), the deterministic
heuristics it falls back on (``rules``), and extraction by the model (``extraction``).

It may import ``events``, ``config``, ``vocabulary`` and ``routing`` (for model capabilities and
token estimates); the extraction module alone talks to the SDK. Never Gradio, storage or the engine.
"""
