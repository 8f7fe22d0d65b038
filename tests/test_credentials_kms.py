"""Signing with a KMS key (ECC_NIST_P256, SIGN_VERIFY) through c2pa's callback signer, the chain
from Secrets Manager or SSM: real boto3 against moto's server on loopback, c2pa's own Reader.

(moto's KMS ignores ``MessageType=DIGEST``; voxproof's claims are ~1.7 KB, so the RAW path is
the one taken and tested here; the DIGEST path for claims over 4 KB runs only on real KMS.)"""

from __future__ import annotations

import io
import uuid

import c2pa
import numpy as np
import pytest
from fakes import StaticKeys
from voxproof import audio
from voxproof.credentials.kms import KMS_RAW_MAX_BYTES, KmsSign, issue_chain
from voxproof.credentials.signer import SigningFailed
from voxproof.deadline import Deadline
from voxproof.keyring import KeyRing
from voxproof.runtime import AwsClients, build_credentials
from voxproof.service import Caller, Service
from voxproof.settings import Settings
from voxproof.watermark import WatermarkKey

KEY = WatermarkKey.from_hex("d4" * 32)
CALLER = Caller("test:kms", "api")


@pytest.fixture
def kms_stack(aws_client, moto_endpoint, monkeypatch, tmp_path):
    """A KMS signing key, its chain in a secret and in a parameter; AwsClients pointed at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    kms = aws_client("kms")
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    chain, ca = issue_chain(kms.get_public_key(KeyId=key_id)["PublicKey"])
    suffix = uuid.uuid4().hex[:8]
    secret = aws_client("secretsmanager").create_secret(
        Name=f"vx-c2pa-chain-{suffix}", SecretString=chain.decode())["ARN"]
    parameter = f"/vx/{suffix}/c2pa-chain"
    aws_client("ssm").put_parameter(Name=parameter, Value=chain.decode(), Type="String")
    return {"key_id": key_id, "chain": chain, "ca": ca, "secret": secret,
            "parameter": parameter, "kms": kms, "state": tmp_path / "state"}


def _settings(stack, **over) -> Settings:
    fields = {"state_dir": stack["state"], "c2pa_kms_key_id": stack["key_id"],
              "c2pa_chain_secret_id": stack["secret"]}
    fields.update(over)
    return Settings(**fields)


def _wav() -> bytes:
    tone = 0.3 * np.sin(np.arange(22050 * 2) * 2 * np.pi * 220 / 22050)
    return audio.encode(tone.astype(np.float32), 22050)


@pytest.mark.parametrize("source", ["secret", "parameter"])
def test_kms_signs_and_the_own_ca_is_trusted(kms_stack, source):
    if source == "secret":
        settings = _settings(kms_stack)
    else:
        settings = _settings(kms_stack, c2pa_chain_secret_id=None,
                             c2pa_chain_parameter=kms_stack["parameter"])
    creds = build_credentials(settings, AwsClients())
    signed = creds.sign(_wav(), "wav", record_id=0x42, key_id="k", voice="v",
                        model_manifest_sha256="0" * 64)
    assert creds.check_embedded(signed.audio, "audio/wav").state == "trusted"
    # c2pa's own Reader agrees: trusted with the KMS chain's CA, untrusted without.
    anchored = c2pa.Context(c2pa.Settings.from_dict({
        "verify": {"verify_trust": True}, "trust": {"trust_anchors": kms_stack["ca"].decode()}}))
    assert c2pa.Reader("audio/wav", io.BytesIO(signed.audio),
                       context=anchored).get_validation_state() == "Trusted"
    assert c2pa.Reader("audio/wav", io.BytesIO(signed.audio)).get_validation_state() == "Valid"
    assert not (kms_stack["state"] / "c2pa").exists()  # no local key was made


def test_a_callback_signers_manifest_reserves_room_for_a_timestamp(kms_stack):
    creds = build_credentials(_settings(kms_stack), AwsClients())
    signed = creds.sign(_wav(), "wav", record_id=1, key_id="k", voice="v",
                        model_manifest_sha256="0" * 64)
    assert 10_000 < len(signed.manifest_store) < 20_000


def test_kms_sign_sends_raw_messages_up_to_4_kb(kms_stack):
    seen: list[tuple[str, int]] = []

    class Spy:
        def sign(self, **kw):
            seen.append((kw["MessageType"], len(kw["Message"])))
            return kms_stack["kms"].sign(**kw)

    sign = KmsSign(kms_stack["key_id"], Spy())
    sign(b"x" * KMS_RAW_MAX_BYTES)
    sign(b"x" * (KMS_RAW_MAX_BYTES + 1))
    assert seen == [("RAW", KMS_RAW_MAX_BYTES), ("DIGEST", 32)]


def test_a_kms_key_that_refuses_keeps_nothing(kms_stack, default_voice, registry):
    gone = _settings(kms_stack, c2pa_kms_key_id=str(uuid.uuid4()))  # KMS answers NotFound
    svc = Service(default_voice, StaticKeys(KeyRing(KEY)), registry, max_chars=500,
                  credentials=build_credentials(gone, AwsClients()))
    with pytest.raises(SigningFailed):
        svc.speak("Nothing is kept when signing fails.", CALLER, Deadline.after(60))
    assert registry.count() == 0


def test_speech_signed_by_kms_verifies_through_the_service(kms_stack, default_voice, registry):
    svc = Service(default_voice, StaticKeys(KeyRing(KEY)), registry, max_chars=500,
                  credentials=build_credentials(_settings(kms_stack), AwsClients()))
    result = svc.speak("Signed in a key service.", CALLER, Deadline.after(60), fmt="mp3")
    report = svc.verify(result.audio, CALLER)
    assert report.credentials.status == "manifest_and_mark"
    assert report.credentials.validation == "trusted"


def test_the_chain_script_issues_and_stores_a_chain_that_signs(kms_stack, aws_client,
                                                                moto_endpoint, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    empty = aws_client("secretsmanager").create_secret(Name=f"vx-empty-{uuid.uuid4().hex[:8]}")
    env = {**os.environ, "PYTHONPATH": str(repo / "functions"), "AWS_ENDPOINT_URL": moto_endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run([sys.executable, str(repo / "scripts" / "c2pa_kms_chain.py"), "--key-id",
                    kms_stack["key_id"], "--secret-id", empty["ARN"], "--ca-out",
                    str(tmp_path / "ca.pem")], check=True, env=env, capture_output=True)
    creds = build_credentials(_settings(kms_stack, c2pa_chain_secret_id=empty["ARN"]),
                              AwsClients())
    signed = creds.sign(_wav(), "wav", record_id=7, key_id="k", voice="v",
                        model_manifest_sha256="0" * 64)
    anchored = c2pa.Context(c2pa.Settings.from_dict({
        "verify": {"verify_trust": True},
        "trust": {"trust_anchors": (tmp_path / "ca.pem").read_text()}}))
    assert c2pa.Reader("audio/wav", io.BytesIO(signed.audio),
                       context=anchored).get_validation_state() == "Trusted"
