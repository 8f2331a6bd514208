"""supportbot: a Gradio playground for multimodal customer-support agents on Oxlo.ai.

Run `python app.py`; configuration comes from the environment and `.env` (see README).
"""

from __future__ import annotations

import os
import sys

from supportbot.config import Settings, redact
from supportbot.errors import SupportbotError
from supportbot.ui.app import build_app, launch_options, prepare, queue_options


def main() -> int:
    settings = None
    try:
        settings = Settings.load()
        options = launch_options(settings)
        demo = build_app(settings, prepare(settings))
    except SupportbotError as exc:
        # Masked like every message: a start-up error must not print the key (from the env or .env).
        key = settings.api_key.get_secret_value() if settings and settings.api_key else os.environ.get("OXLO_API_KEY")
        print(f"supportbot cannot start: {redact(str(exc), key)}", file=sys.stderr)
        return 2
    demo.queue(**queue_options(settings)).launch(**options, prevent_thread_lock=True)
    # The page is up: now load the SDK (~0.5 s), so the first turn does not wait for its import.
    import openai  # noqa: F401

    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
