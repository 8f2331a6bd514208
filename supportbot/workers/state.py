"""A session on its way to a worker and back: its fields, and patches of what a turn changed.

A turn appends to the session's lists and changes a few fields; a patch carries the new list
items (and the last few, which may change in place) and the changed fields, so a burst of events
costs the page-serving process a small unpickle, not the whole conversation.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, fields
from typing import Any

from supportbot.session import Session

# Session lists a turn appends to; the last few items may also change in place (a fallback marks
# the turn's route), so they are compared again on each batch.
_LISTS = ("messages", "tool_calls", "routes", "usage")
_RECHECK = 4
# Fields a worker never sends back: the busy flag belongs to the process that serves the visitor.
_LOCAL = {"busy"}


def session_state(session: Session) -> dict[str, Any]:
    """Every field of a session, as a worker receives it."""
    return {f.name: getattr(session, f.name) for f in fields(session) if f.name not in _LOCAL}


def apply_state(session: Session, state: dict[str, Any]) -> None:
    """Write a worker's fields into the visitor's own session object (gr.State keeps that object)."""
    for name, value in state.items():
        if name not in _LOCAL:
            setattr(session, name, value)


@dataclass
class Tracker:
    """What the other side already has of a session: list lengths, and the pickled tail items."""

    lengths: dict[str, int] = field(default_factory=dict)
    tails: dict[str, list[bytes]] = field(default_factory=dict)
    scalars: dict[str, bytes] = field(default_factory=dict)

    def patch(self, session: Session) -> dict[str, Any]:
        """The changes since the last patch: new or changed list items (by index), changed fields."""
        out: dict[str, Any] = {}
        for f in fields(session):
            name = f.name
            if name in _LOCAL or name == "history":  # the model's memory comes with the final state
                continue
            value = getattr(session, name)
            if name in _LISTS:
                known = self.lengths.get(name, 0)
                tail = self.tails.get(name, [])
                first = min(known, len(value))  # from here on, items are new (or the list shrank)
                for k, blob in enumerate(tail):  # the last few known items may have changed in place
                    index = known - len(tail) + k
                    if index >= len(value) or pickle.dumps(value[index]) != blob:
                        first = min(first, index)
                        break
                if first < len(value) or len(value) != known:
                    out[name] = (first, value[first:])
                self.lengths[name] = len(value)
                self.tails[name] = [pickle.dumps(v) for v in value[max(0, len(value) - _RECHECK) :]]
            else:
                blob = pickle.dumps(value)
                if self.scalars.get(name) != blob:
                    out[name] = value
                    self.scalars[name] = blob
        return out


def apply_patch(session: Session, patch: dict[str, Any]) -> None:
    """Apply a worker's patch to the visitor's session."""
    for name, value in patch.items():
        if name in _LISTS:
            first, items = value
            current = getattr(session, name)
            setattr(session, name, [*current[:first], *items])
        elif name not in _LOCAL:
            setattr(session, name, value)
