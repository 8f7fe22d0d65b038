"""voxproof.runtime: the service wired once from explicit settings (local or AWS), and what each
Lambda entry point imports when its container starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from voxproof.deadline import Deadline
from voxproof.keyring import FileKeySource, SecretsManagerKeySource
from voxproof.provenance import DynamoRegistry, SQLiteRegistry
from voxproof.runtime import Runtime, build_service
from voxproof.service import Caller
from voxproof.settings import Settings
from voxproof.watermark import WatermarkKey

REPO = Path(__file__).resolve().parent.parent
TEXT = "The provenance of this sentence is on record."
CALLER = Caller("test:alice", "cli", request_id="req-1")
#: What the synthesis stack pulls in; the verify function must never import any of it.
SYNTHESIS_STACK = ("torch", "TTS", "num2words", "voxproof.voice.synthesis", "voxproof.text",
                   "voxproof.expand")


def test_local_service_creates_one_private_key_and_reuses_it(tmp_path, default_voice):
    settings = Settings(state_dir=tmp_path / "state")
    a = build_service(settings, voice=default_voice)
    ring = a.keys.keyring()
    assert settings.key_file.stat().st_mode & 0o777 == 0o600
    assert settings.state_dir.stat().st_mode & 0o777 == 0o700
    b = build_service(settings, voice=default_voice)
    assert b.keys.keyring().current == ring.current
    clip = a.speak(TEXT, CALLER, Deadline.after(60))
    assert b.verify(clip.wav(), CALLER).verdict == "recorded"  # same SQLite registry


def test_without_clients_the_service_is_local_whatever_the_settings_name(tmp_path):
    settings = Settings(state_dir=tmp_path / "state", records_table="t", key_secret_id="s")
    service = build_service(settings)
    assert isinstance(service.registry, SQLiteRegistry)
    assert isinstance(service.keys, FileKeySource)
    assert service.max_chars == settings.max_text_chars_sync and service.loaded_voice is None


def test_with_clients_records_and_keys_come_from_aws(tmp_path, aws_client, moto_endpoint,
                                                      monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # botocore reads it itself
    key = WatermarkKey.generate()
    suffix = uuid.uuid4().hex[:8]
    ddb = aws_client("dynamodb")
    ddb.create_table(TableName=f"vx-rt-{suffix}", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "record_id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}])
    secret = aws_client("secretsmanager").create_secret(Name=f"vx-rt-{suffix}",
                                                        SecretString=key.to_hex())["ARN"]
    settings = Settings(state_dir=tmp_path / "state", records_table=f"vx-rt-{suffix}",
                        key_secret_id=secret)
    runtime = Runtime.build(settings, max_chars=321)
    service = runtime.service
    assert isinstance(service.registry, DynamoRegistry)
    assert isinstance(service.keys, SecretsManagerKeySource)
    assert service.keys.keyring().current == key
    assert service.registry.get(1) is None  # the table answers through the runtime's client
    assert service.max_chars == 321 and service.loaded_voice is None  # no preload asked
    assert runtime.aws("dynamodb") is runtime.aws("dynamodb")  # one client per service
    assert not (tmp_path / "state").exists()  # nothing local was made


def _imported_by(module: str, env: dict[str, str]) -> dict[str, bool]:
    """Import ``module`` in a fresh interpreter; which of the heavy modules did it load?"""
    heavy = [*SYNTHESIS_STACK, "boto3"]
    code = (f"import sys, json, {module}; "
            f"print(json.dumps({{m: m in sys.modules for m in {heavy!r}}}))")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("VOXPROOF_", "AWS_"))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False,
                          env={**clean, "PYTHONPATH": str(REPO / "functions"), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


AWS_ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}


def test_the_verify_function_imports_no_synthesis_stack(tmp_path):
    """template.yaml's VerifyFunction: the API handler, AWS settings, no preload."""
    env = {**AWS_ENV, "VOXPROOF_STATE_DIR": str(tmp_path / "state"),
           "VOXPROOF_RECORDS_TABLE": "records", "VOXPROOF_INPUT_BUCKET": "input",
           "VOXPROOF_KEY_SECRET_ID": "arn:aws:secretsmanager:us-east-1:1:secret:k"}
    loaded = _imported_by("voxproof.handlers.api", env)
    assert not any(loaded[name] for name in SYNTHESIS_STACK), loaded


def test_the_local_api_imports_neither_synthesis_nor_boto3(tmp_path):
    """``voxproof serve`` without AWS settings: no boto3 until a bucket is used."""
    loaded = _imported_by("voxproof.handlers.api", {"VOXPROOF_STATE_DIR": str(tmp_path / "s")})
    assert not any(loaded.values()), loaded


def test_traced_containers_patch_botocore_only_when_a_client_is_made(tmp_path):
    """On Lambda (tracing on) init imports no botocore client code nor requests, and the first
    boto3 client still comes out traced (test_api_lambda sees its calls as X-Ray subsegments)."""
    code = ("import sys, json, voxproof.handlers.common as common; "
            "before = {m: m in sys.modules for m in ('botocore.client', 'requests')}; "
            "import boto3, botocore.client; "
            "boto3.session.Session().client('dynamodb'); "
            "wrapped = type(botocore.client.BaseClient._make_api_call).__name__; "
            "print(json.dumps([common.tracer.disabled, before, wrapped]))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VOXPROOF_", "AWS_"))}
    env = {**clean, **AWS_ENV, "PYTHONPATH": str(REPO / "functions"),
           "LAMBDA_TASK_ROOT": str(tmp_path), "AWS_LAMBDA_FUNCTION_NAME": "voxproof-speech"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    disabled, before, wrapped = json.loads(done.stdout.strip().splitlines()[-1])
    assert disabled is False  # a Lambda environment: tracing on
    assert before == {"botocore.client": False, "requests": False}
    assert wrapped == "BoundFunctionWrapper"  # the X-Ray SDK's wrapper around every API call


def test_the_batch_function_loads_no_model_before_a_job_runs(tmp_path):
    env = {**AWS_ENV, "VOXPROOF_STATE_DIR": str(tmp_path / "state"),
           "VOXPROOF_RECORDS_TABLE": "records", "VOXPROOF_IDEMPOTENCY_TABLE": "idempotency",
           "VOXPROOF_OUTPUT_BUCKET": "output", "VOXPROOF_INPUT_BUCKET": "input",
           "VOXPROOF_JOBS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/jobs",
           "VOXPROOF_KEY_SECRET_ID": "arn:aws:secretsmanager:us-east-1:1:secret:k"}
    loaded = _imported_by("voxproof.handlers.batch", env)
    assert not any(loaded[name] for name in ("torch", "TTS", "voxproof.voice.synthesis")), loaded


def _children() -> set[int]:
    tasks = Path(f"/proc/{os.getpid()}/task")
    return {int(pid) for task in tasks.iterdir()
            for pid in (task / "children").read_text().split()}


@pytest.mark.parametrize("preload", [False, True])
def test_only_a_verify_container_starts_a_decode_worker_at_build(tmp_path, default_voice,
                                                                  preload):
    """The speech function (voice preloaded) gets no uploads: a spare worker there would only
    take CPU from its first request and memory from its 1,024 MB."""
    settings = Settings(state_dir=tmp_path / "state", preload_voice=preload)
    assert settings.decode_in_worker
    before = _children()
    runtime = Runtime.build(settings, max_chars=100, voice=default_voice)
    started = _children() - before
    assert (len(started) == 1) is not preload, started
    clip = runtime.service.speak(TEXT, CALLER, Deadline.after(60), fmt="mp3")
    # ... and a container that did not start one still decodes an upload (in a worker)
    assert runtime.service.verify(clip.audio, CALLER).verdict == "recorded"
    assert len(_children() - before) >= 1
    runtime.service.decoder.close()


@pytest.mark.parametrize("preload", [False, True])
def test_the_runtime_loads_the_voice_at_build_only_when_asked(tmp_path, default_voice, preload):
    settings = Settings(state_dir=tmp_path / "state", preload_voice=preload)
    loads: list[Settings] = []

    def load(got: Settings):
        loads.append(got)
        return default_voice

    import voxproof.voice

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(voxproof.voice, "load_voice", load)
        runtime = Runtime.build(settings, max_chars=100)
        assert (runtime.service.loaded_voice is default_voice) is preload
        assert loads == ([settings] if preload else [])
        assert runtime.service.voice is default_voice and len(loads) == 1
