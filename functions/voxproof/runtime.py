"""One process's wiring: explicit ``Settings`` in; the service and its AWS clients out.

``build_service`` is the one place the service is put together, for every entry point: the
provenance registry in DynamoDB and the key in Secrets Manager where the settings name them and
AWS clients are given, else SQLite and the key file in the state folder. A ``Runtime`` holds what
a long-lived process builds once (a Lambda container at init, ``voxproof serve``): the settings,
the service and one boto3 session's clients. Handlers receive it; tests build their own.

boto3 is imported when the first client is made, so a local run never imports it.

Example:
    >>> import tempfile
    >>> from voxproof.settings import Settings
    >>> runtime = Runtime.build(Settings(state_dir=tempfile.mkdtemp()), max_chars=1000)
    >>> runtime.service.max_chars, runtime.service.loaded_voice is None
    (1000, True)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from voxproof import __version__
from voxproof.credentials.core import Credentials
from voxproof.decode_worker import Decoder, decoder_for
from voxproof.errors import VoxproofError
from voxproof.keyring import FileKeySource, KeySource, SecretsManagerKeySource
from voxproof.service import Service, Step, no_step

if TYPE_CHECKING:
    from voxproof.credentials.signer import CredentialSigner
    from voxproof.local_settings import LocalSettings
    from voxproof.provenance import ProvenanceRecord, Registry
    from voxproof.settings import Settings
    from voxproof.voice import Voice


class AwsClients:
    """boto3 clients from one session, each made on first use and then reused.

    Parameters
    ----------
    configs:
        ``botocore.config.Config`` arguments per service name (e.g. timeouts for ``s3``).
    """

    def __init__(self, configs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._configs = {name: dict(config) for name, config in (configs or {}).items()}
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()  # a boto3 session is not thread-safe

    def __call__(self, service: str) -> Any:
        """The client for ``service`` (``"s3"``, ``"dynamodb"``, ...)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._make(service)
            return self._clients[service]

    def _make(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        if self._session is None:
            self._session = boto3.session.Session()
        config = self._configs.get(service)
        return self._session.client(service, config=Config(**config) if config else None)


def build_service(settings: Settings | LocalSettings, *, aws: AwsClients | None = None,
                  max_chars: int | None = None, voice: Voice | None = None,
                  key_files: list[str] | None = None, create_key: bool = True,
                  step: Step = no_step, decoder: Decoder | None = None,
                  registry_on_first_use: bool = False) -> Service:
    """The service for ``settings``: AWS parts where configured and ``aws`` is given, else local.

    Parameters
    ----------
    settings:
        The model layer and its pin, the state folder, the AWS names (``LocalSettings``:
        the defaults a local service reads, for a CLI run with no ``VOXPROOF_*`` variable).
    aws:
        Clients for the AWS parts (``records_table``, ``key_secret_id``); without them (the CLI)
        the registry and key are always the local ones.
    max_chars:
        The longest text this entry point accepts (default ``max_text_chars_sync``).
    voice:
        An already loaded voice; by default the settings' layer is loaded on the first speech.
    key_files:
        Key files to use instead, current first (never created).
    create_key:
        Create the state folder's key file if it is missing (the CLI's verify does not).
    step:
        Wraps each step of the use cases (the Lambda adapters trace them).
    decoder:
        What decodes verify's uploads (default: ``decode_worker.decoder_for(settings)``, a
        worker started on the first upload or by ``Runtime.build``).
    registry_on_first_use:
        Open the registry when a record is first read or written, not now (the CLI's verify:
        a file without a mark never opens it, nor imports the records' pydantic models; a
        local registry that does not exist yet is not created by a look-up).
    """

    def load() -> Voice:
        from voxproof.voice import load_voice  # the synthesis stack: only when a voice is needed

        return load_voice(settings)

    registry = (RegistryOnFirstUse(lambda: _registry(settings, aws), _local_registry(settings, aws))
                if registry_on_first_use else _registry(settings, aws))
    return Service(voice or load, _keys(settings, aws, key_files, create_key), registry,
                   max_chars=max_chars or settings.max_text_chars_sync, step=step,
                   decoder=decoder or decoder_for(settings),
                   credentials=build_credentials(settings, aws))


def build_credentials(settings: Settings | LocalSettings,
                      aws: AwsClients | None = None) -> Credentials:
    """Signing and trust for Content Credentials: a KMS key and the chain from Secrets Manager
    or SSM where the settings name them and ``aws`` is given, else the local identity in the
    state folder (created on the first signature, never by verify). Trusted: the own CA (unless
    ``c2pa_trust_own_ca`` is off) and ``c2pa_trust_anchors``."""
    chain: list[bytes] = []  # the KMS chain, read once by whichever needs it first

    def kms_chain() -> bytes:
        from voxproof.credentials.kms import read_chain

        if not chain:
            assert aws is not None
            chain.append(read_chain(
                secret_id=settings.c2pa_chain_secret_id, parameter=settings.c2pa_chain_parameter,
                secretsmanager=aws("secretsmanager") if settings.c2pa_chain_secret_id else None,
                ssm=aws("ssm") if settings.c2pa_chain_parameter else None))
        return chain[0]

    on_kms = aws is not None and settings.c2pa_kms_key_id is not None
    on_aws_chain = aws is not None and bool(settings.c2pa_chain_secret_id
                                            or settings.c2pa_chain_parameter)

    def signer() -> CredentialSigner:
        from voxproof.credentials.identity import LocalIdentity
        from voxproof.credentials.signer import CredentialSigner

        if on_kms:
            from voxproof.credentials.kms import KmsSign

            assert aws is not None and settings.c2pa_kms_key_id is not None
            return CredentialSigner.from_callback(KmsSign(settings.c2pa_kms_key_id, aws("kms")),
                                                  kms_chain())
        settings.ensure_state_dir()
        return CredentialSigner.local(LocalIdentity.load_or_create(settings.credentials_dir))

    def anchors() -> str | None:
        from voxproof.credentials import CA_FILE

        pems: list[bytes] = []
        if settings.c2pa_trust_own_ca:
            if on_aws_chain:
                from voxproof.credentials.identity import root_of  # cryptography: only here

                try:
                    pems.append(root_of(kms_chain()))
                except (VoxproofError, ValueError):  # not provisioned yet: trusted on a later ask
                    pass
            elif (settings.credentials_dir / CA_FILE).is_file():
                pems.append((settings.credentials_dir / CA_FILE).read_bytes())
        if settings.c2pa_trust_anchors is not None:
            pems.append(settings.c2pa_trust_anchors.read_bytes())
        return b"".join(pems).decode() or None

    return Credentials(signer, anchors, version=__version__)


class RegistryOnFirstUse:
    """A ``Registry`` opened by ``open_`` on its first call, then that registry. With ``file``
    (a local registry's), a read before the file exists finds nothing and creates nothing."""

    def __init__(self, open_: Callable[[], Registry], file: Path | None = None) -> None:
        self._open = open_
        self._file = file
        self._registry: Registry | None = None
        self._lock = threading.Lock()

    def _absent(self) -> bool:
        """Nothing was ever written to this registry (and it is not open)."""
        return self._registry is None and self._file is not None and not self._file.exists()

    @property
    def opened(self) -> Registry:
        """The registry, opened now if it was not yet."""
        with self._lock:
            if self._registry is None:
                self._registry = self._open()
            return self._registry

    def put_new(self, record: ProvenanceRecord, manifest: bytes | None = None) -> None:
        self.opened.put_new(record, manifest)

    def get(self, record_id: int) -> ProvenanceRecord | None:
        return None if self._absent() else self.opened.get(record_id)

    def get_manifest(self, record_id: int) -> bytes | None:
        return None if self._absent() else self.opened.get_manifest(record_id)


REGISTRY_FILE: Final = "records.sqlite3"
"""The local registry's file in the state folder."""


def _local_registry(settings: Settings | LocalSettings, aws: AwsClients | None) -> Path | None:
    """The file of the registry ``_registry`` opens, when it is the local one."""
    return None if aws is not None and settings.records_table else (
        settings.state_dir / REGISTRY_FILE)


def _registry(settings: Settings | LocalSettings, aws: AwsClients | None) -> Registry:
    from voxproof.provenance import DynamoRegistry, S3Manifests, SQLiteRegistry

    if aws is not None and settings.records_table:
        manifests = None
        if settings.output_bucket:  # stores too large for an item go beside the records
            manifests = S3Manifests(settings.output_bucket, aws("s3"), settings.bucket_owner)
        return DynamoRegistry(settings.records_table, aws("dynamodb"), manifests)
    settings.ensure_state_dir()
    return SQLiteRegistry(settings.state_dir / REGISTRY_FILE)


def _keys(settings: Settings | LocalSettings, aws: AwsClients | None, key_files: list[str] | None,
          create_key: bool) -> KeySource:
    if key_files:
        return FileKeySource(key_files)
    if aws is not None and settings.key_secret_id:
        return SecretsManagerKeySource(settings.key_secret_id, aws("secretsmanager"),
                                       max_age_s=settings.key_cache_s)
    settings.ensure_state_dir()
    return FileKeySource([str(settings.key_file)], create=create_key)


@dataclass(frozen=True, eq=False)
class Runtime:
    """What one long-lived process builds once from its settings and every request reuses."""

    settings: Settings
    """Read once, by whoever built this runtime (never from a cache)."""
    service: Service
    """speak and verify, wired by ``build_service``."""
    aws: AwsClients
    """The process's boto3 clients (made on first use)."""

    @classmethod
    def build(cls, settings: Settings, *, max_chars: int, step: Step = no_step,
              aws: AwsClients | None = None, voice: Voice | None = None) -> Runtime:
        """The runtime for ``settings``; the voice is loaded now when ``preload_voice`` is set
        (a Lambda container's init), else on the first speech (verify never loads it)."""
        aws = aws if aws is not None else AwsClients()
        service = build_service(settings, aws=aws, max_chars=max_chars, voice=voice, step=step)
        if settings.preload_voice:  # a speech container: no spare decode worker taking CPU and
            service.load()          # memory from its first request (one starts on an upload)
        else:
            service.decoder.start()  # a verify container: a worker ready for the first upload
        return cls(settings, service, aws)
