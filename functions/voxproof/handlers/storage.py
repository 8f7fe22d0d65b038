"""The API's S3 side: speech too large to return inline goes out through the output bucket (a
presigned URL comes back); verify reads uploads from the input bucket, only under ``verify/``.

Errors never name a bucket, an endpoint or boto's own message: a missing or forbidden object is
``NotFound``, a key outside ``verify/`` is ``Forbidden``, anything else S3 answers (or fails to)
is ``Unavailable``. The boto3 client comes from the caller; given the account id that owns the
buckets, every call checks it (``ExpectedBucketOwner``).

Example:
    >>> inputs = InputBucket("bucket", client=None)
    >>> inputs.check_key("jobs/a.jsonl")
    Traceback (most recent call last):
    ...
    voxproof.errors.Forbidden: only keys under verify/ in the input bucket can be verified
"""

from __future__ import annotations

from typing import Any, Final

from voxproof.aws_errors import S3Fault, aws_errors, s3_fault
from voxproof.errors import AudioTooLarge, Forbidden, NotFound, Unavailable

SPEECH_PREFIX: Final = "speech/"
VERIFY_PREFIX: Final = "verify/"

class _Bucket:
    """One bucket through one boto3 ``s3`` client; with ``owner`` (an account id), every call
    names it as ``ExpectedBucketOwner``, so a bucket of the same name in another account (a
    deleted bucket's name taken by someone else) is never read or written."""

    def __init__(self, bucket: str, client: Any, *, owner: str | None = None) -> None:
        self._bucket = bucket
        self._client = client
        self._owner: dict[str, str] = {"ExpectedBucketOwner": owner} if owner else {}


class OutputBucket(_Bucket):
    """Where large speech goes: ``speech/<record id>.wav``, handed out as a presigned GET URL.

    Parameters
    ----------
    bucket:
        The output bucket's name.
    client:
        A boto3 ``s3`` client.
    url_ttl_s:
        Lifetime of the presigned URLs.
    owner:
        The account that must own the bucket (``ExpectedBucketOwner``). The presigned URL does
        not carry it (its downloader would have to send the header); the upload it points to
        was checked.
    """

    def __init__(self, bucket: str, client: Any, *, url_ttl_s: int,
                 owner: str | None = None) -> None:
        super().__init__(bucket, client, owner=owner)
        self.url_ttl_s = url_ttl_s

    def put_speech(self, record_id_hex: str, wav: bytes, fmt: str = "wav",
                   content_type: str = "audio/wav") -> str:
        """Store the audio; returns a presigned URL that fetches it for ``url_ttl_s`` seconds."""
        key = f"{SPEECH_PREFIX}{record_id_hex}.{fmt}"
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=wav,
                                    ContentType=content_type,
                                    Metadata={"record-id": record_id_hex},
                                    **self._owner)
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key},
                ExpiresIn=self.url_ttl_s)
        except aws_errors():
            raise Unavailable("the audio could not be stored in the output bucket; try again") \
                from None


class InputBucket(_Bucket):
    """Uploads to verify (``InputBucket(bucket, s3_client)``): only objects under ``verify/``,
    at most ``max_bytes`` read."""

    @staticmethod
    def check_key(key: str) -> None:
        """``Forbidden`` unless ``key`` is an object under ``verify/`` (no ``.``/``..`` parts)."""
        parts = key.split("/")
        if not key.startswith(VERIFY_PREFIX) or key == VERIFY_PREFIX or \
                any(part in (".", "..") for part in parts):
            raise Forbidden("only keys under verify/ in the input bucket can be verified")

    def fetch(self, key: str, *, max_bytes: int) -> bytes:
        """The object's bytes; ``AudioTooLarge`` past ``max_bytes`` (checked before reading)."""
        self.check_key(key)
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key, **self._owner)
            if int(head["ContentLength"]) > max_bytes:
                raise AudioTooLarge(f"the object is {head['ContentLength']} bytes; the limit is "
                                    f"{max_bytes}", limit_bytes=max_bytes)
            body = self._client.get_object(Bucket=self._bucket, Key=key,
                                           Range=f"bytes=0-{max_bytes}", **self._owner)["Body"]
            data = body.read(max_bytes + 1)
        except aws_errors() as exc:
            if s3_fault(exc) in (S3Fault.MISSING, S3Fault.DENIED):
                raise NotFound("no object with this key under verify/ in the input bucket") \
                    from None
            raise Unavailable("the input bucket could not be read; try again") from None
        if len(data) > max_bytes:  # the object grew between the two requests
            raise AudioTooLarge(f"the object is larger than {max_bytes} bytes",
                                limit_bytes=max_bytes)
        return data
