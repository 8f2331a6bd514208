"""The Gradio playground: layout in app.py, pure rendering in render.py."""

from supportbot.ui.app import build_app, launch_options

__all__ = ["build_app", "launch_options"]
