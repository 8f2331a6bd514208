"""Storage: everything that outlives a request.

``store`` holds the demo shop (customers, orders, knowledge base, refunds, escalations) seeded
from the validated files that ``demo_data`` reads; ``history`` persists conversations and ticket
versions and exports/imports them, checked against the conversation schema in ``schema``. It may
import ``errors``, ``vocabulary``, ``session`` and the ticket's schema (``ticket.record``); never the
SDK, Gradio, routing or the engine.
"""
