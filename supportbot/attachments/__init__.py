"""Attachments: what a customer sends besides text, made safe and small enough to send.

``images`` sniffs, bounds, orients and downscales screenshots into data URLs; ``logs`` opens
pasted or uploaded logs (gzip included) as streams with caps; ``analysis`` reads a log line's
level, time and template and summarises a log; ``reduce`` shrinks a log to a token budget.
It may import ``errors``, ``vocabulary`` and ``routing.tokens``; never the SDK, Gradio,
storage or the offline engine.
"""
