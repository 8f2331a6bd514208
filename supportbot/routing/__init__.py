"""Routing: which model takes a turn, and why.

Owns the editable model catalog (``catalog``), the offline token estimates (``tokens``) and the
pure routing rules (``router``). It may import ``config``, ``errors``, ``events`` and
``vocabulary``; nothing here does I/O beyond reading its asset files once, and nothing here
imports the SDK, Gradio or the offline engine.
"""
