"""Attachments: size and type limits, stored by the exchange in its own database (so a purge
removes them in the same transaction as the rest of the request's personal data)."""

from __future__ import annotations

import hashlib
import uuid

import puremagic

from services.exchange.lifecycle import Caller, handles_for_a_party, invalid, refused
from services.exchange.models import Attachment, AttachmentContent, Request, State
from shared.errors import ApiError
from shared.outbox import UnitOfWork
from shared.settings import Settings

# Office documents are zip containers: their content shows "zip", their name and declared type say which.
_ZIP_BASED = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.oasis.opendocument.text",
}


def detected_type(content: bytes, declared: str) -> str | None:
    """The media type the content really has, if we can tell; a declared type must agree with it."""
    try:
        found = puremagic.from_string(content, mime=True)
    except puremagic.PureError:
        return None
    if declared in _ZIP_BASED and content.startswith(b"PK\x03\x04"):
        return declared
    return found or None


def check_file(settings: Settings, filename: str, declared: str, content: bytes) -> str:
    if len(content) > settings.attachment_max_bytes:
        raise ApiError(
            413,
            "attachment_too_large",
            f"attachments are limited to {settings.attachment_max_bytes} bytes",
            field="file",
        )
    if not content:
        raise invalid("attachment_empty", "the file is empty", "file")
    actual = detected_type(content, declared)
    if actual is None or actual not in settings.attachment_types:
        raise ApiError(
            415, "attachment_type_not_allowed", f"accepted types: {', '.join(settings.attachment_types)}", field="file"
        )
    if not filename or len(filename) > 255 or any(c in filename for c in "/\\\x00"):
        raise invalid("attachment_name_invalid", "give the file a plain name of up to 255 characters", "file")
    return actual


async def attach(
    uow: UnitOfWork,
    settings: Settings,
    caller: Caller,
    request: Request,
    *,
    filename: str,
    declared_type: str,
    content: bytes,
    is_party: bool,
) -> Attachment:
    if not is_party:
        raise refused("only the two authorities attach documents")
    if not handles_for_a_party(caller, request):
        raise refused("only request handlers attach documents")
    if request.state in (State.closed, State.withdrawn) or request.purged_at is not None:
        raise ApiError(409, "transition_not_allowed", f"cannot attach to a request that is {request.state}")
    media_type = check_file(settings, filename, declared_type, content)
    attachment = Attachment(
        id=uuid.uuid4(),
        request_id=request.id,
        filename=filename,
        content_type=media_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        uploaded_by=caller.user_id,
        uploaded_by_authority_id=caller.authority_id,
        uploaded_at=uow.clock.now(),
    )
    uow.session.add(attachment)
    await uow.session.flush()
    uow.session.add(AttachmentContent(attachment_id=attachment.id, content=content))
    return attachment
