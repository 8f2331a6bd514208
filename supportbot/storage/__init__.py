"""Storage: everything that outlives a request.

``store`` holds the demo shop (customers, orders, knowledge base, refunds, escalations) seeded
from the validated files that ``demo_data`` reads; ``history`` persists conversations and ticket
versions and exports/imports them. It may import ``errors``, ``vocabulary`` and ``session``;
never the SDK, Gradio, routing or the engine.
"""
