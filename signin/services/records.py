import logging
import re

from django.db import IntegrityError

from signin.models import SignInEvent
from trail.stream import stream_on, stream_signin

logger = logging.getLogger(__name__)

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str, limit: int) -> str:
    """As typed, but storable and loggable: control characters shown as U+FFFD, length bounded."""
    return CONTROL_CHARACTERS.sub("\ufffd", text)[:limit]


def signin_event_record(**fields) -> SignInEvent:
    """The audit trail loses nothing: the record is written before the answer is given. One INSERT, committed
    by itself (the sign-in's hops run in autocommit): its foreign keys, deferred, are checked as it commits."""
    fields["username"] = printable(fields.get("username", ""), 320)
    fields["user_agent"] = printable(fields.get("user_agent", ""), 512)
    event = SignInEvent(**fields)
    try:
        event.save()
    except IntegrityError:
        if not event.agent_id and not event.application_id:
            raise
        # The agent (or the application) was deleted while the sign-in was under way: recorded all the same.
        logger.warning("sign-in %s answered by agent %s for application %s, one deleted since; recorded without "
                       "them", event.request_id, event.agent_id, event.application_id)
        event.agent_id = None
        event.application_id = None
        event.save()
    if stream_on():  # PTA_AUDIT_STREAM: the record also goes out as a JSON line
        stream_signin(event)
    return event
