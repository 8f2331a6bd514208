"""QA toolkit: scenario files that run as regression tests, and record/replay of sessions.

* ``scenario``: the TOML scenario format, validated by pydantic (errors name the file and field);
* ``generate``: attachments made at run time (a 3M-token log, a text file named .png);
* ``runner``: runs each scenario in fresh Services through ``conversation.TurnRunner`` and
  checks its expectations;
* ``report``: the table per scenario and step, and JUnit XML for CI;
* ``export``: ``scenario_from_session``, a conversation written back as a scenario;
* ``cassette``: ``SUPPORTBOT_RECORD`` and ``SUPPORTBOT_ENGINE=replay`` transports.

Run with ``python -m supportbot.qa run [PATH...] [--model ID] [--junit FILE]``. Nothing here
imports Gradio.
"""
