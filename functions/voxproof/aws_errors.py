"""What a failed AWS call means: botocore's exception types, and one reading of S3's answers.

Every S3 caller (the API's buckets, batch's result store and job-file reader) classifies its
failures here and raises its own ``VoxproofError``, never naming a bucket, an endpoint or
botocore's message. botocore is imported when a call fails, not when this module is.

Example:
    >>> from botocore.exceptions import ClientError
    >>> s3_fault(ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"))
    <S3Fault.MISSING: 'missing'>
    >>> s3_fault(ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"))
    <S3Fault.UNAVAILABLE: 'unavailable'>
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class S3Fault(Enum):
    """What an S3 failure means to the caller."""

    MISSING = "missing"
    """No such key, or no such version of it (404)."""
    DENIED = "denied"
    """Access denied (403)."""
    CHANGED = "changed"
    """A precondition failed (412): the object is no longer the one asked for."""
    UNAVAILABLE = "unavailable"
    """Anything else S3 answered (throttling, 5xx), or no answer at all: worth a retry."""


_CODES: Final = {
    **dict.fromkeys(("404", "NoSuchKey", "NoSuchVersion", "NotFound"), S3Fault.MISSING),
    **dict.fromkeys(("403", "AccessDenied", "Forbidden"), S3Fault.DENIED),
    **dict.fromkeys(("412", "PreconditionFailed"), S3Fault.CHANGED),
}


def aws_errors() -> tuple[type[Exception], ...]:
    """What a boto3 client raises when AWS says no or does not answer (``ClientError``,
    ``BotoCoreError``): ``except aws_errors():`` catches exactly those, never a bug."""
    from botocore.exceptions import BotoCoreError, ClientError

    return ClientError, BotoCoreError


def s3_fault(exc: Exception) -> S3Fault:
    """What ``exc`` (one of :func:`aws_errors`, raised by an S3 call) means."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return _CODES.get(code, S3Fault.UNAVAILABLE)
