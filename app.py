"""supportbot: a Gradio playground for multimodal customer-support agents on Oxlo.ai.

Run `python app.py`; configuration comes from the environment and `.env` (see README).
"""

from __future__ import annotations

import sys

from supportbot.config import Settings
from supportbot.errors import SupportbotError
from supportbot.ui.app import build_app, launch_options, prepare, queue_options


def main() -> int:
    try:
        settings = Settings.load()
        options = launch_options(settings)
        demo = build_app(settings, prepare(settings))
    except SupportbotError as exc:
        print(f"supportbot cannot start: {exc}", file=sys.stderr)
        return 2
    demo.queue(**queue_options(settings)).launch(**options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
