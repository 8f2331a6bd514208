"""Storage: everything that outlives a request, in SQLite (one process) or PostgreSQL (several replicas).

``db`` is the one interface the rest uses (``Database``: ``transaction()``, ``execute``, and hooks
for what the dialects do differently), implemented by ``sqlite`` and ``postgres`` (psycopg 3 and a
pool, imported only when ``SUPPORTBOT_DATABASE_URL`` names PostgreSQL); ``migrations`` creates and
versions the schema at start-up. ``store`` holds the demo shop (customers, orders, knowledge
base) seeded from the validated files that ``demo_data`` reads, never modified after; ``sandbox``
gives each conversation its own copy-on-write view of it (refunds, escalations, order changes);
``history`` persists conversations and ticket versions and exports/imports them, checked against
the conversation schema in ``schema``; ``counters`` keeps the daily spending counters. It may
import ``config``, ``errors``, ``vocabulary``, ``session`` and the ticket's schema
(``ticket.record``); never the SDK, Gradio, routing or the engine.
"""
