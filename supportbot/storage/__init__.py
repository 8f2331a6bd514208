"""Storage: everything that outlives a request.

``store`` holds the demo shop (customers, orders, knowledge base) seeded from the validated
files that ``demo_data`` reads, never modified after; ``sandbox`` gives each conversation its
own copy-on-write view of it (refunds, escalations, order changes); ``history`` persists
conversations and ticket versions and exports/imports them, checked against the conversation
schema in ``schema``; ``counters`` keeps the daily spending counters. It may import ``config``,
``errors``, ``vocabulary``, ``session`` and the ticket's schema (``ticket.record``); never the SDK,
Gradio, routing or the engine.
"""
