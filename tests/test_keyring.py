"""voxproof.keyring: key files and AWS Secrets Manager (moto's server on loopback), rotation."""

from __future__ import annotations

import uuid

import pytest
from voxproof.errors import KeyError_, Unavailable
from voxproof.keyring import FileKeySource, KeyRing, SecretsManagerKeySource
from voxproof.watermark import WatermarkKey

A = WatermarkKey.from_hex("0a" * 32)
B = WatermarkKey.from_hex("0b" * 32)


@pytest.fixture
def secrets(aws_client):
    return aws_client("secretsmanager")


def new_secret(client, value: str) -> str:
    return client.create_secret(Name=f"vx-{uuid.uuid4().hex[:8]}", SecretString=value)["ARN"]


def test_current_key_from_the_secret_and_no_previous_before_rotation(secrets):
    arn = new_secret(secrets, A.to_hex())
    ring = SecretsManagerKeySource(arn, secrets, max_age_s=0).keyring()
    assert ring.current == A and ring.previous == ()


def test_rotation_makes_the_old_key_previous(secrets):
    arn = new_secret(secrets, A.to_hex())
    source = SecretsManagerKeySource(arn, secrets, max_age_s=0)
    secrets.put_secret_value(SecretId=arn, SecretString=B.to_hex())
    ring = source.keyring()
    assert ring.current == B and ring.previous == (A,)
    assert ring.accepted == (B, A)


def test_values_are_cached_per_container(secrets):
    arn = new_secret(secrets, A.to_hex())
    source = SecretsManagerKeySource(arn, secrets, max_age_s=300)
    assert source.keyring().current == A
    secrets.put_secret_value(SecretId=arn, SecretString=B.to_hex())
    assert source.keyring().current == A  # within max_age: no second fetch
    assert SecretsManagerKeySource(arn, secrets, max_age_s=300).keyring().current == B


def test_a_secret_never_rotated_costs_one_call_per_max_age_not_per_request(secrets):
    arn = new_secret(secrets, A.to_hex())
    calls: list[str] = []
    secrets.meta.events.register("provide-client-params.secrets-manager.GetSecretValue",
                                 lambda params, **_: calls.append(params["VersionStage"]))
    source = SecretsManagerKeySource(arn, secrets, max_age_s=300)
    for _ in range(5):
        assert source.keyring().previous == ()
    assert calls == ["AWSCURRENT", "AWSPREVIOUS"]  # the missing stage is remembered too


def test_a_malformed_secret_is_a_key_error_that_does_not_echo_it(secrets):
    arn = new_secret(secrets, "not-a-key-but-a-password-123")
    with pytest.raises(KeyError_) as err:
        SecretsManagerKeySource(arn, secrets, max_age_s=0).keyring()
    assert "password" not in err.value.message


def test_missing_secret_is_unavailable(secrets):
    with pytest.raises(Unavailable):
        SecretsManagerKeySource("arn:aws:secretsmanager:us-east-1:123456789012:secret:nope",
                                secrets, max_age_s=0).keyring()


def test_key_ring_accepts_each_key_once():
    assert KeyRing(A, (B, A, B)).accepted == (A, B)


def test_file_source_creates_the_first_key_only_when_asked(tmp_path):
    with pytest.raises(KeyError_, match="does not exist"):
        FileKeySource([tmp_path / "k"]).keyring()
    ring = FileKeySource([tmp_path / "sub" / "k"], create=True).keyring()
    assert (tmp_path / "sub" / "k").stat().st_mode & 0o777 == 0o600
    assert FileKeySource([tmp_path / "sub" / "k"]).keyring().current == ring.current
    assert "0a0a" not in repr(KeyRing(A))  # reprs never show a key
