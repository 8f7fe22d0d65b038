"""Where the watermark keys come from: the key that marks, and every key verify accepts.

A ``KeyRing`` holds the current key (it marks new audio) and the previous ones (still accepted
at verify, so rotating a key does not orphan audio already out there). Sources:

- ``FileKeySource``: key files (the local CLI and server). The first file is the current key;
  with ``create=True`` a missing first file is generated (mode 0600 in a 0700 folder).
- ``SecretsManagerKeySource``: an AWS Secrets Manager secret holding ``KeySecret`` JSON
  (``voxproof.key_secret``, the one pydantic part, imported only by the AWS source and
  rotation) ``{"current": hex, "previous": [hex, ...]}`` (or, as before key history, the 64 hex
  characters alone). AWSCURRENT's ``current`` marks; its history, newest first, then the
  AWSPREVIOUS version's keys, verify: a retired key is never dropped by a rotation. Values are
  cached per container for ``max_age_s`` (Powertools' parameters utility), so a rotation reaches
  every container within that time. The boto3 client comes from the caller.
- ``rotate``: the steps of a Secrets Manager rotation that appends to the history (the
  template's scheduled rotation function; the procedure is in the README, "Keys").

Keys never appear in logs, errors or reprs (``WatermarkKey.__repr__`` shows the key id only).

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> ring = FileKeySource([folder / "k"], create=True).keyring()
    >>> ring.accepted == (ring.current,)
    True
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from voxproof.errors import KeyError_, Unavailable
from voxproof.watermark import WatermarkKey

if TYPE_CHECKING:  # pydantic: only where a secret's JSON is read (AWS), never for key files
    from voxproof.key_secret import KeySecret

log = logging.getLogger(__name__)

#: Retired keys the secret may keep. Verify tries every key on unmarked audio, so each one adds
#: a search (and ``MAX_ATTEMPTS`` x 2^-24 = 23 x 2^-24 to the false-positive bound).
MAX_KEY_HISTORY: Final = 32



@dataclass(frozen=True)
class KeyRing:
    """The key that marks and the keys that verify."""

    current: WatermarkKey
    """Marks new audio; tried first at verify."""

    previous: tuple[WatermarkKey, ...] = ()
    """Retired keys still accepted at verify."""

    @property
    def accepted(self) -> tuple[WatermarkKey, ...]:
        """Every key verify tries, current first, without duplicates."""
        keys = [self.current]
        for key in self.previous:
            if key not in keys:
                keys.append(key)
        return tuple(keys)


class KeySource(Protocol):
    """Anything that can say which keys are in force now."""

    def keyring(self) -> KeyRing:
        """The keys in force (may be cached)."""


class FileKeySource:
    """Keys from files of 64 hex characters; the first is the current key.

    Parameters
    ----------
    paths:
        Key files, current first.
    create:
        Generate the first file (mode 0600, folder 0700) if it does not exist.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], *, create: bool = False) -> None:
        if not paths:
            raise KeyError_("at least one key file is needed")
        self._paths = [Path(p) for p in paths]
        self._create = create
        self._ring: KeyRing | None = None

    def keyring(self) -> KeyRing:
        if self._ring is None:
            self._ring = KeyRing(self._first(), tuple(
                WatermarkKey.read_key_file(p) for p in self._paths[1:]))
        return self._ring

    def _first(self) -> WatermarkKey:
        path = self._paths[0]
        if self._create and not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = WatermarkKey.generate()
            try:
                key.write_key_file(path)
                log.info("created a new watermark key %s in the local state folder", key.key_id)
            except KeyError_:
                pass  # another process created it first: read theirs
        return WatermarkKey.read_key_file(path)


class SecretsManagerKeySource:
    """Keys from an AWS Secrets Manager secret: AWSCURRENT's ``current`` marks; its history
    (``previous``, newest first), then AWSPREVIOUS's keys, verify.

    Parameters
    ----------
    secret_id:
        The secret's name or ARN (not secret itself; template.yaml passes the ARN).
    client:
        A boto3 ``secretsmanager`` client.
    max_age_s:
        How long a fetched value is reused in this container.
    """

    def __init__(self, secret_id: str, client: Any, *, max_age_s: int = 300) -> None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        self._secret_id = secret_id
        self._max_age = max_age_s
        # One provider per version stage: Powertools' cache key is the name, not the stage.
        self._current = SecretsProvider(boto3_client=client)
        self._previous = SecretsProvider(boto3_client=client)
        self._client = client
        # A secret never rotated has no AWSPREVIOUS: remember that for max_age too (the provider
        # caches values only), or every request would pay one failing call.
        self._no_previous_until = float("-inf")

    def keyring(self) -> KeyRing:
        current = self._fetch(self._current, "AWSCURRENT", required=True)
        previous = None
        if time.monotonic() >= self._no_previous_until:
            previous = self._fetch(self._previous, "AWSPREVIOUS", required=False)
            if previous is None:
                self._no_previous_until = time.monotonic() + self._max_age
        assert current is not None
        ring = current.keyring()
        if previous is None:
            return ring
        # A rotation that did not append to the history still leaves the last key verifying.
        older = previous.keyring().accepted
        return KeyRing(ring.current, ring.previous + older)

    def _fetch(self, provider: Any, stage: str, *, required: bool) -> KeySecret | None:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        from voxproof.key_secret import KeySecret

        try:
            value = provider.get(self._secret_id, max_age=self._max_age, VersionStage=stage)
        except GetParameterError as exc:
            if not required and _is_missing_stage(exc):
                return None
            raise Unavailable("the watermark key cannot be read from the secret store") from None
        if not isinstance(value, str):
            raise KeyError_("the watermark key secret must be a string")
        try:
            return KeySecret.parse(value)
        except KeyError_ as err:
            raise KeyError_(f"the watermark key secret's {stage} version: {err.message}") from None


def _is_missing_stage(exc: Exception) -> bool:
    """A secret without an AWSPREVIOUS version (never rotated) is not an error."""
    text = str(exc)
    return "ResourceNotFoundException" in text or "VersionStage" in text


# --- rotation (Secrets Manager's four-step protocol; the template's KeyRotationFunction) ---------

ROTATION_STEPS: Final = ("createSecret", "setSecret", "testSecret", "finishSecret")


def rotate(client: Any, secret_id: str, token: str, step: str) -> None:
    """One step of a Secrets Manager rotation of the watermark key secret: ``createSecret``
    stores a new key as AWSPENDING with the current key pushed onto the history (newest first,
    nothing dropped), ``testSecret`` checks that the history holds the current key, and
    ``finishSecret`` makes it AWSCURRENT. ``setSecret`` has nothing to do (no other service
    holds the key). Each step may run again (Secrets Manager retries them)."""
    if step not in ROTATION_STEPS:
        raise KeyError_(f"unknown rotation step; expected one of {', '.join(ROTATION_STEPS)}")
    stages = client.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})
    if "AWSCURRENT" in stages.get(token, ()):
        return  # this version is already current: a retried step after the rotation finished
    if step == "createSecret":
        _create_pending(client, secret_id, token)
    elif step == "testSecret":
        pending = _value(client, secret_id, VersionId=token, VersionStage="AWSPENDING")
        current = _value(client, secret_id, VersionStage="AWSCURRENT")
        if pending.previous[:1] != (current.current,):
            raise KeyError_("the pending key secret does not keep the current key in its history")
    elif step == "finishSecret":
        current_version = next(v for v, s in stages.items() if "AWSCURRENT" in s)
        client.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSCURRENT",
                                           MoveToVersionId=token,
                                           RemoveFromVersionId=current_version)
        log.info("watermark key rotated")


def _create_pending(client: Any, secret_id: str, token: str) -> None:
    from botocore.exceptions import ClientError

    try:
        _value(client, secret_id, VersionId=token, VersionStage="AWSPENDING")
        return  # made by an earlier try of this step
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    current = _value(client, secret_id, VersionStage="AWSCURRENT")
    client.put_secret_value(SecretId=secret_id, ClientRequestToken=token,
                            SecretString=current.rotated(WatermarkKey.generate()).to_json(),
                            VersionStages=["AWSPENDING"])


def _value(client: Any, secret_id: str, **version: str) -> KeySecret:
    from voxproof.key_secret import KeySecret

    return KeySecret.parse(client.get_secret_value(SecretId=secret_id, **version)["SecretString"])


def __getattr__(name: str) -> Any:
    """``KeySecret`` is read from ``voxproof.key_secret`` on first use: its pydantic model is
    built only where a secret is read, never for key files (a CLI verify)."""
    if name == "KeySecret":
        from voxproof.key_secret import KeySecret

        return KeySecret
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
