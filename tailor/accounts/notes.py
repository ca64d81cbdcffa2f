"""A caller's own words about who did something: kept, labelled as a note, never as the actor.

Who recorded a consent change or decided a review is the authenticated caller (its key id or
token subject). Older clients still send a free-text name (``recorded_by``, ``reviewer``); it is
not evidence of anything, but dropping it would lose what the caller meant to say, so it is kept
in an existing text column after the real text, labelled, and cut to fit the column.
"""

from __future__ import annotations


def with_note(text: str, note: str | None, *, limit: int) -> str:
    """``text`` followed by ``(note: ...)``; only the note is shortened to fit ``limit``."""
    if not note:
        return text
    head = f"{text} (note: " if text else "(note: "
    if len(head) + len(note) + 1 <= limit:
        return f"{head}{note})"
    room = limit - len(head) - len("…)")
    if room <= 0:  # no room for any of the note: the real text matters more
        return text[:limit]
    return f"{head}{note[:room]}…)"
