"""The one place that reads the environment (``VOXPROOF_*`` variables).

Everything else receives a ``Settings`` (or the values it needs) as an argument. Importing this
module imports no part of the voice stack (``voice.pins`` is a leaf).

Example:
    >>> s = Settings(state_dir="/tmp/vx-state")
    >>> s.key_file.name
    'watermark.key'
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voxproof.local_settings import (
    CREDENTIALS_DIR_NAME,
    KEY_FILE_NAME,
    default_state_dir,
    ensure_state_dir,
)
from voxproof.voice.pins import DEFAULT_MANIFEST_SHA256

_PACKAGE_DIR: Final = Path(__file__).resolve().parent
#: Where the layer sits in a source checkout (``functions/voxproof`` -> ``layers/model``).
CHECKOUT_MODEL_DIR: Final = _PACKAGE_DIR.parent.parent / "layers" / "model"
#: Where the image puts the layer.
IMAGE_MODEL_DIR: Final = Path("/opt/voxproof/model")


def _default_model_dir() -> Path:
    if (CHECKOUT_MODEL_DIR / "manifest.json").is_file():
        return CHECKOUT_MODEL_DIR
    return IMAGE_MODEL_DIR


class Settings(BaseSettings):
    """Run-time configuration, from ``VOXPROOF_*`` environment variables or arguments."""

    model_config = SettingsConfigDict(env_prefix="VOXPROOF_", extra="forbid")

    state_dir: Path = Field(default_factory=default_state_dir)
    """Local state: the default key file, the SQLite provenance registry. Created mode 0700."""

    model_dir: Path = Field(default_factory=_default_model_dir)
    """The model layer folder described by its ``manifest.json``."""

    model_manifest_sha256: str = Field(
        default=DEFAULT_MANIFEST_SHA256, pattern=r"^[0-9a-f]{64}$"
    )
    """The pinned sha256 of the layer's ``manifest.json``: the default voice's pin unless set.
    A custom layer must set its own; any other manifest is refused."""

    key_file: Path | None = None
    """The watermark key file (64 hex characters); default ``<state_dir>/watermark.key``."""

    max_text_chars_sync: int = 1_000
    """Longest text the synchronous entry points (CLI synth, API) accept."""

    max_text_chars_batch: int = 20_000
    """Longest text one batch job may carry."""

    engine: Literal["onnx", "torch"] = "onnx"
    """The engine that speaks: ``onnx`` (the default: Coqui's ONNX export of the layer's
    checkpoint on onnxruntime; torch is never imported) or ``torch`` (Coqui's own ``Vits``,
    the reference). Both give the same audio within the tolerance in docs/voice.md."""

    torch_threads: int = 0
    """Inference threads of either engine (the name predates the ONNX engine); 0 means one per
    available core."""

    # --- AWS (set by template.yaml; unset locally, where SQLite and key files are used) -----
    records_table: str | None = None
    """DynamoDB table of provenance records (template: RecordsTable)."""

    idempotency_table: str | None = None
    """DynamoDB table for batch idempotency (template: IdempotencyTable)."""

    input_bucket: str | None = None
    """Bucket of uploads: verify inputs under ``verify/``, job files under ``jobs/``."""

    output_bucket: str | None = None
    """Bucket of outputs: large speech under ``speech/``, batch results under ``batch/``."""

    jobs_queue_url: str | None = None
    """SQS queue of batch jobs (job files fan out into it)."""

    key_secret_id: str | None = None
    """Secrets Manager secret (ARN) holding the watermark key as 64 hex characters."""

    key_cache_s: int = 300
    """How long a container reuses the fetched key before asking Secrets Manager again."""

    preload_voice: bool = False
    """Load the model at container start (the speech function) rather than on first use."""

    deadline_margin_s: float = 1.0
    """Time kept back from Lambda's remaining time for answering."""

    job_idempotency_expiry_s: int = Field(default=14 * 86_400, ge=3_600)
    """How long a batch job id (and a job file's fan-out) is remembered: a replay within this
    time makes nothing new. 14 days = the dead-letter queue's retention, so any message that
    can still exist in the queue or its DLQ is covered."""

    max_job_file_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    """Largest ``jobs/*.jsonl`` file read from the input bucket."""

    max_job_file_lines: int = Field(default=10_000, ge=1)
    """Most lines one job file may hold."""

    inline_audio_max_bytes: int = 4_000_000
    """Larger speech goes to the output bucket and comes back as a presigned URL."""

    presigned_url_ttl_s: int = 900
    """Lifetime of presigned output URLs."""

    auditor_principals: Annotated[tuple[str, ...], NoDecode] = ()
    """IAM principals (ARNs; ``*`` and ``?`` match as in shell patterns, e.g.
    ``arn:aws:sts::123456789012:assumed-role/VoxproofAuditor/*``) that get the detailed verify
    answer at ``POST /v1/verify/detailed``, comma-separated in the environment. The principal
    is the one API Gateway authenticated (SigV4), never a header. Empty: nobody does."""

    bucket_owner: str | None = Field(default=None, pattern=r"^[0-9]{12}$")
    """The account id that must own the buckets (S3's ``ExpectedBucketOwner`` on every call;
    template: the stack's account). Unset locally and in tests without an account."""

    decode_in_worker: bool = True
    """Decode verify uploads in a worker process with no secrets and hard limits (a
    ``DecodeWorker``); off only for debugging, when decoding runs in this process."""

    decode_worker_memory_mb: int = Field(default=512, ge=64)
    """Address space the decode worker may use beyond its imports (RLIMIT_AS)."""

    decode_worker_cpu_s: int = Field(default=30, ge=1)
    """CPU seconds the decode worker may use per upload (RLIMIT_CPU)."""

    # --- Content Credentials (C2PA) ---------------------------------------------------------
    c2pa_kms_key_id: str | None = None
    """An AWS KMS key (ECC_NIST_P256, SIGN_VERIFY) that signs every output's manifest (the
    speaking functions); unset: the local key in ``<state_dir>/c2pa``."""

    c2pa_chain_secret_id: str | None = None
    """Secrets Manager secret holding the KMS key's certificate chain (PEM, signing
    certificate first)."""

    c2pa_chain_parameter: str | None = None
    """...or an SSM parameter holding it (used when no secret is named)."""

    c2pa_trust_anchors: Path | None = None
    """A PEM file of further CA certificates verify trusts when it checks a manifest."""

    c2pa_trust_own_ca: bool = True
    """Trust the CA of this deployment's own signing certificate (the local CA, or the root of
    the KMS key's chain). Off: only ``c2pa_trust_anchors`` are trusted."""

    @field_validator("auditor_principals", mode="before")
    @classmethod
    def _split_principals(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @model_validator(mode="after")
    def _fill_key_file(self) -> Settings:
        if self.key_file is None:
            self.key_file = self.state_dir / KEY_FILE_NAME
        return self

    @property
    def credentials_dir(self) -> Path:
        """The local C2PA signing identity: CA, signing certificate, key (mode 0600)."""
        return self.state_dir / CREDENTIALS_DIR_NAME

    @property
    def wheel_cache_dir(self) -> Path:
        """Where ``voxproof layer build`` keeps the downloaded voice wheel."""
        return self.state_dir / "wheels"

    def ensure_state_dir(self) -> Path:
        """Create the state folder (mode 0700) if missing and return it."""
        return ensure_state_dir(self.state_dir)
