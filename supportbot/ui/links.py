"""Links that resume: the conversation id in the address bar, and this browser's recent conversations.

The browser keeps its own list of conversation ids (``gr.BrowserState``, in its localStorage): never a
list shared between visitors. What comes back from the browser is data it could have forged, so it is
read as at most ``MAX_RECENT`` well-formed ids, each looked up on the server before it is shown; the
titles shown are the stored conversations' own first messages, never text from the browser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from supportbot.errors import SupportbotError
from supportbot.session import Session

# A conversation id as session.new_conversation_id makes it; anything else is not looked up (or echoed).
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_RECENT = 12
# localStorage key and (public: it is sent to the page) obfuscation secret, fixed so a restart keeps the list.
STORAGE_KEY = "supportbot-recent-conversations"
STORAGE_SECRET = "supportbot-recent-v1"

# Runs in the browser whenever the conversation id changes: the address bar carries ?c=<id> (or none).
URL_JS = """(cid) => {
  const url = new URL(window.location.href);
  if (cid) { url.searchParams.set('c', cid); } else { url.searchParams.delete('c'); }
  if (url.href !== window.location.href) { window.history.replaceState(null, '', url); }
}"""

# The "Copy link" button: the page's address (with ?c=) to the clipboard, with a word on the button.
COPY_JS = """() => {
  const btn = document.querySelector('#sb-copy');
  const say = (text) => { if (!btn) return; const old = '🔗 Copy link'; btn.innerText = text;
    setTimeout(() => { btn.innerText = old; }, 1800); };
  const url = new URL(window.location.href);
  if (!url.searchParams.get('c')) { say('Send a message first'); return; }
  const fallback = () => { const t = document.createElement('textarea'); t.value = url.href;
    document.body.appendChild(t); t.select(); let ok = false; try { ok = document.execCommand('copy'); } catch (e) {}
    t.remove(); say(ok ? '✓ Link copied' : 'Copy the address bar'); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(url.href).then(() => say('✓ Link copied'), fallback);
  } else { fallback(); }
}"""

# After a turn: when the turn is taller than the chat, show it from the customer's message down (the start of
# the answer then follows it; the rest is a scroll away).
SCROLL_JS = """() => {
  setTimeout(() => {
    const chat = document.querySelector('#sb-chat');
    if (!chat) return;
    const bubbles = [...chat.querySelectorAll('[data-testid="user"], [data-testid="bot"]')];
    let i = bubbles.length - 1;
    while (i >= 0 && bubbles[i].dataset.testid === 'bot') i--;
    while (i > 0 && bubbles[i - 1].dataset.testid === 'user') i--;
    const first = bubbles[i];
    if (!first) return;
    let box = first.parentElement;
    while (box && box !== document.body && !(box.scrollHeight > box.clientHeight + 4 &&
           ['auto', 'scroll'].includes(getComputedStyle(box).overflowY))) { box = box.parentElement; }
    if (!box || box === document.body) return;
    const top = first.getBoundingClientRect().top - box.getBoundingClientRect().top;
    if (top < 0) { box.scrollTop += top - 8; }
  }, 700);  // after the chat's own scroll to the bottom, which waits 300 ms after a new value
}"""


def recent_ids(value: Any) -> list[str]:
    """The well-formed, distinct ids of a browser's list, newest first, at most ``MAX_RECENT``."""
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for item in value[: MAX_RECENT * 4]:  # a forged list can be long: read a bounded prefix
        if isinstance(item, str) and CONVERSATION_ID.fullmatch(item) and item not in out:
            out.append(item)
        if len(out) == MAX_RECENT:
            break
    return out


def remember(value: Any, conversation_id: str) -> list[str]:
    """The browser's list with ``conversation_id`` first (moved there if it was already listed)."""
    ids = [i for i in recent_ids(value) if i != conversation_id]
    return [conversation_id, *ids][:MAX_RECENT]


def title_of(session: Session) -> str:
    """A conversation as the list names it: its first message, cut short (it never changes, so a list built
    once stays right)."""
    first = next((m for m in session.messages if m["role"] == "user"), None)
    text = " ".join(str(first.get("content") or "").split()) if first else ""
    if not text and first:
        text = ", ".join(str(a.get("filename")) for a in first.get("attachments") or ()) or "(attachment)"
    text = text if len(text) <= 60 else text[:59] + "…"
    return text or "(empty)"


def recent_choices(value: Any, load: Callable[[str], Session | None], current: Session | None) -> list[tuple[str, str]]:
    """(title, id) for each id of the browser's list that is stored here; the current conversation marked."""
    choices = []
    for cid in recent_ids(value):
        if current is not None and cid == current.conversation_id and current.messages:
            stored: Session | None = current
        else:
            try:
                stored = load(cid)
            except SupportbotError:  # unreadable: left out of the list, as an unknown id is
                stored = None
        if stored is not None and stored.messages:
            mark = " (open)" if current is not None and cid == current.conversation_id else ""
            choices.append((title_of(stored) + mark, cid))
    return choices
