"""Provenance records: one per output, written before the audio is returned.

A record names what produced a piece of audio: the record id carried by its watermark, when, with
which key and model layer, for whom and through which entry point, and a keyed hash of the text
(never the text itself, so the registry cannot leak what was said, while whoever holds the key
and a candidate text can check a match).

Two registries share one interface: ``SQLiteRegistry`` (a file in the local state folder) and
``DynamoRegistry`` (a DynamoDB table on AWS; its client comes from the caller). Writes are
insert-if-absent, so a record id is never reused or overwritten.

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

    def put_new(self, record: ProvenanceRecord) -> None:
        """Store ``record``; ``RecordExists`` if its id is taken."""

    def get(self, record_id: int) -> ProvenanceRecord | None:
        """The record with this id, or None."""


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
        if self._path != ":memory:":
            Path(self._path).chmod(0o600)

    def put_new(self, record: ProvenanceRecord) -> None:
        with self._lock:
            try:
                self._db.execute("INSERT INTO records (record_id, body) VALUES (?, ?)",
                                 (record.record_id, record.model_dump_json()))
            except sqlite3.IntegrityError as exc:
                raise RecordExists("a record with this id exists") from exc

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


class DynamoRegistry:
    """Records in a DynamoDB table keyed by ``record_id`` (a 10-hex-character string).

    Parameters
    ----------
    table_name:
        The table (template.yaml: ``RecordsTable``).
    client:
        A boto3 DynamoDB client (low level), built by the caller.
    """

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def put_new(self, record: ProvenanceRecord) -> None:
        item = {"record_id": {"S": record.record_id_hex},
                "body": {"S": record.model_dump_json()},
                "created_at": {"S": record.created_at}}
        try:
            self._client.put_item(TableName=self._table, Item=item,
                                  ConditionExpression="attribute_not_exists(record_id)")
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            raise RecordExists("a record with this id exists") from exc
        except Exception as exc:  # botocore's network and service errors
            raise Unavailable("the provenance registry cannot be reached") from exc

    def get(self, record_id: int) -> ProvenanceRecord | None:
        try:
            out = self._client.get_item(TableName=self._table,
                                        Key={"record_id": {"S": f"{record_id:010x}"}},
                                        ConsistentRead=True)
        except Exception as exc:
            raise Unavailable("the provenance registry cannot be reached") from exc
        item = out.get("Item")
        return ProvenanceRecord.model_validate(json.loads(item["body"]["S"])) if item else None
