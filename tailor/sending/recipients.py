"""The recipients of one attempt: each consenting send with its contact's profile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tailor.models import Contact
from tailor.profiles.loader import Profile, ProfileLoader
from tailor.store.sends import SendRow


@dataclass(frozen=True)
class Recipient:
    send_id: int
    contact: Contact
    message_id: str
    profile: Profile
    control: bool = False  # in the campaign's control group (here: it gets the plain email)

    @property
    def contact_id(self) -> int:
        return self.contact.id or 0


async def load_recipients(
    profiles: ProfileLoader, sends: Sequence[SendRow]
) -> tuple[list[Recipient], int]:
    """Recipients for these sends, and how many wait because their profile is unavailable now."""
    loaded = await profiles.load([s.contact_id for s in sends])
    recipients = [
        Recipient(s.id, loaded[s.contact_id].contact, s.message_id, loaded[s.contact_id], s.control)
        for s in sends
        if s.contact_id in loaded
    ]
    return recipients, len(sends) - len(recipients)
