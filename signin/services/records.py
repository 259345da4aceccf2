import re

from signin.models import SignInEvent

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str, limit: int) -> str:
    """As typed, but storable and loggable: control characters shown as U+FFFD, length bounded."""
    return CONTROL_CHARACTERS.sub("\ufffd", text)[:limit]


def signin_event_record(**fields) -> SignInEvent:
    """The audit trail loses nothing: the record is written before the answer is given."""
    fields["username"] = printable(fields.get("username", ""), 320)
    fields["user_agent"] = printable(fields.get("user_agent", ""), 512)
    event = SignInEvent(**fields)
    event.save()
    return event
