"""Provenance records: one per output, written before the audio is returned.

A record names what produced a piece of audio: the record id carried by its watermark, when, with
which key and model layer, for whom and through which entry point, and a keyed hash of the text
(never the text itself, so the registry cannot leak what was said, while whoever holds the key
and a candidate text can check a match).

Two registries share one interface: ``SQLiteRegistry`` (a file in the local state folder) and
``DynamoRegistry`` (a DynamoDB table on AWS; its client comes from the caller). Writes are
insert-if-absent, so a record id is never reused or overwritten. The output's C2PA manifest
store is written with its record, in the same write (``get_manifest`` reads it back), so a copy
whose manifest was stripped leads back to it through the mark.

Example:
    >>> reg = SQLiteRegistry(":memory:")
    >>> rec = ProvenanceRecord.new(record_id=0x0123456789, key_id="ab12cd34", text_hash="00" * 32,
    ...     model_manifest_sha256="11" * 32, voice="joe", sample_rate=22050, duration_s=1.5,
    ...     caller="cli:alice", entry_point="cli")
    >>> reg.put_new(rec)
    >>> reg.get(0x0123456789).record_id_hex
    '0123456789'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from voxproof.errors import Unavailable, VoxproofError
from voxproof.watermark.keys import WatermarkKey

RECORD_SCHEMA_VERSION: Final = 1
#: Entry points that write records.
EntryPoint = Literal["cli", "api", "batch-sqs", "batch-s3", "serve"]
_TEXT_HASH_LABEL: Final = b"voxproof/v1/text-hash"


class RecordExists(VoxproofError):
    """A record with this id is already stored (the caller draws a new id and retries)."""

    code = "record_exists"
    status = 409


class ProvenanceRecord(BaseModel):
    """What the registry knows about one output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RECORD_SCHEMA_VERSION
    """Version of this record's layout."""

    record_id: int = Field(ge=0, lt=2**40)
    """The 40-bit id the watermark carries."""

    created_at: str
    """When the record was written (UTC, ISO 8601, seconds)."""

    key_id: str
    """Public id of the watermark key that marked the audio (never the key)."""

    model_manifest_sha256: str
    """SHA-256 of the model layer's manifest that spoke."""

    voice: str
    """Voice name from the manifest."""

    sample_rate: int
    """Sample rate of the returned audio."""

    duration_s: float
    """Duration of the returned audio."""

    text_hash: str
    """HMAC-SHA256 of the NFC text under a key derived from the watermark key (hex): whoever
    holds the key and a candidate text can check it; nobody can read the text back."""

    caller: str
    """Who asked: API key id, IAM principal, queue/bucket source or local user."""

    entry_point: str
    """cli, api, batch-sqs, batch-s3 or serve."""

    job_id: str | None = None
    """The batch job id, when the request came as a job."""

    request_id: str | None = None
    """The Lambda/API request id, when there was one."""

    @classmethod
    def new(cls, **fields: Any) -> ProvenanceRecord:
        """A record stamped with the current time."""
        fields.setdefault("created_at", datetime.now(UTC).replace(microsecond=0).isoformat())
        return cls(**fields)

    @property
    def record_id_hex(self) -> str:
        return f"{self.record_id:010x}"

    def public_dict(self) -> dict[str, Any]:
        """The record as verify reports it (record id in hex)."""
        body = self.model_dump()
        body["record_id"] = self.record_id_hex
        return body


def text_hash(key: WatermarkKey, text: str) -> str:
    """Keyed hash of ``text`` (NFC): HMAC-SHA256 under a key derived from the watermark key."""
    sub_key = key.mac(_TEXT_HASH_LABEL)
    normal = unicodedata.normalize("NFC", text).encode("utf-8")
    return hmac.new(sub_key, normal, hashlib.sha256).hexdigest()


class Registry(Protocol):
    """Where records live. Implementations: SQLiteRegistry, DynamoRegistry."""

    def put_new(self, record: ProvenanceRecord, manifest: bytes | None = None) -> None:
        """Store ``record`` (and the output's manifest store); ``RecordExists`` if its id is
        taken."""

    def get(self, record_id: int) -> ProvenanceRecord | None:
        """The record with this id, or None."""

    def get_manifest(self, record_id: int) -> bytes | None:
        """The manifest store kept with this record, or None."""


class SQLiteRegistry:
    """Records in one SQLite file (created with its folder, mode 0600)."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        if self._path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (record_id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
        if "manifest" not in columns:  # registries written before manifests were kept
            self._db.execute("ALTER TABLE records ADD COLUMN manifest BLOB")
        if self._path != ":memory:":
            Path(self._path).chmod(0o600)

    def put_new(self, record: ProvenanceRecord, manifest: bytes | None = None) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO records (record_id, body, manifest) VALUES (?, ?, ?)",
                    (record.record_id, record.model_dump_json(), manifest))
            except sqlite3.IntegrityError as exc:
                raise RecordExists("a record with this id exists") from exc

    def get_manifest(self, record_id: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT manifest FROM records WHERE record_id = ?",
                                   (record_id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def get(self, record_id: int) -> ProvenanceRecord | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM records WHERE record_id = ?",
                                   (record_id,)).fetchone()
        return ProvenanceRecord.model_validate_json(row[0]) if row else None

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def close(self) -> None:
        self._db.close()


#: Largest manifest store kept inside its DynamoDB item (items hold at most 400 KB); a larger
#: one goes to S3 beside the record and the item names its key. voxproof's are 3-15 KB.
DYNAMO_MANIFEST_MAX_BYTES: Final = 256 * 1024


class ManifestObjects(Protocol):
    """Where manifest stores too large for a DynamoDB item go (an S3 prefix)."""

    def put(self, name: str, data: bytes) -> str:
        """Store ``data`` under a fresh key derived from ``name``; returns the key."""

    def get(self, key: str) -> bytes:
        """The object's bytes."""


class S3Manifests:
    """Manifest stores as S3 objects beside the records: ``manifests/<record id>-<random>.c2pa``
    (a fresh key per write, so a write for a record id that turns out taken overwrites nothing).

    Parameters
    ----------
    bucket:
        The output bucket.
    client:
        A boto3 S3 client.
    owner:
        The account that must own the bucket (``ExpectedBucketOwner``), when known.
    """

    PREFIX: Final = "manifests/"

    def __init__(self, bucket: str, client: Any, owner: str | None = None) -> None:
        self._bucket = bucket
        self._client = client
        self._owner = {"ExpectedBucketOwner": owner} if owner else {}

    def put(self, name: str, data: bytes) -> str:
        key = f"{self.PREFIX}{name}-{secrets.token_hex(6)}.c2pa"
        self._client.put_object(Bucket=self._bucket, Key=key, Body=data,
                                ContentType="application/c2pa", **self._owner)
        return key

    def get(self, key: str) -> bytes:
        if not key.startswith(self.PREFIX):
            raise ValueError("not a manifest key")
        out = self._client.get_object(Bucket=self._bucket, Key=key, **self._owner)
        return out["Body"].read()


class DynamoRegistry:
    """Records in a DynamoDB table keyed by ``record_id`` (a 10-hex-character string).

    Parameters
    ----------
    table_name:
        The table (template.yaml: ``RecordsTable``).
    client:
        A boto3 DynamoDB client (low level), built by the caller.
    manifests:
        Where manifest stores over ``DYNAMO_MANIFEST_MAX_BYTES`` go (an S3 prefix beside the
        records); without it they are refused.
    """

    def __init__(self, table_name: str, client: Any, manifests: ManifestObjects | None = None,
                 *, max_item_manifest: int = DYNAMO_MANIFEST_MAX_BYTES) -> None:
        self._table = table_name
        self._client = client
        self._manifests = manifests
        self._max_item_manifest = max_item_manifest

    def put_new(self, record: ProvenanceRecord, manifest: bytes | None = None) -> None:
        item = {"record_id": {"S": record.record_id_hex},
                "body": {"S": record.model_dump_json()},
                "created_at": {"S": record.created_at}}
        if manifest is not None:
            item.update(self._manifest_attribute(record.record_id_hex, manifest))
        try:
            self._client.put_item(TableName=self._table, Item=item,
                                  ConditionExpression="attribute_not_exists(record_id)")
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            raise RecordExists("a record with this id exists") from exc
        except Exception as exc:  # botocore's network and service errors
            raise Unavailable("the provenance registry cannot be reached") from exc

    def _manifest_attribute(self, name: str, manifest: bytes) -> dict[str, Any]:
        if len(manifest) <= self._max_item_manifest:
            return {"manifest": {"B": manifest}}
        if self._manifests is None:
            raise Unavailable("this manifest store is too large for the record and no bucket "
                              "is configured for large ones")
        try:
            key = self._manifests.put(name, manifest)  # before the item: it never names nothing
        except Exception as exc:
            raise Unavailable("the manifest store could not be written") from exc
        return {"manifest_key": {"S": key}}

    def get(self, record_id: int) -> ProvenanceRecord | None:
        item = self._item(record_id, "body")
        return ProvenanceRecord.model_validate(json.loads(item["body"]["S"])) if item else None

    def get_manifest(self, record_id: int) -> bytes | None:
        item = self._item(record_id, "manifest, manifest_key")
        if not item:
            return None
        if "manifest" in item:
            return bytes(item["manifest"]["B"])
        if "manifest_key" in item and self._manifests is not None:
            try:
                return self._manifests.get(item["manifest_key"]["S"])
            except Exception as exc:
                raise Unavailable("the stored manifest cannot be read") from exc
        return None

    def _item(self, record_id: int, attributes: str) -> dict[str, Any] | None:
        try:
            out = self._client.get_item(TableName=self._table,
                                        Key={"record_id": {"S": f"{record_id:010x}"}},
                                        ProjectionExpression=attributes, ConsistentRead=True)
        except Exception as exc:
            raise Unavailable("the provenance registry cannot be reached") from exc
        return out.get("Item")
