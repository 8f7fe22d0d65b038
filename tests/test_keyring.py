"""voxproof.keyring: key files and AWS Secrets Manager (moto's server on loopback), rotation."""

from __future__ import annotations

import json
import uuid

import pytest
from voxproof.errors import KeyError_, Unavailable
from voxproof.keyring import (
    MAX_KEY_HISTORY,
    FileKeySource,
    KeyRing,
    KeySecret,
    SecretsManagerKeySource,
    rotate,
)
from voxproof.runtime import AwsClients
from voxproof.service import with_key_bound
from voxproof.watermark import WatermarkKey, detect, embed
from voxproof.watermark.detect import MAX_ATTEMPTS
from watermark_hosts import speechlike

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


# --- key history: {"current", "previous": [...]} kept with the keys ------------------------------


def rotate_once(client, arn: str) -> str:
    """What Secrets Manager does on a scheduled rotation: the four steps, one new version."""
    token = str(uuid.uuid4())
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        rotate(client, arn, token, step)
    return token


def test_a_json_secret_gives_the_current_key_and_its_history_newest_first(secrets):
    C = WatermarkKey.from_hex("0c" * 32)
    arn = new_secret(secrets, json.dumps({"current": C.to_hex(),
                                          "previous": [B.to_hex(), A.to_hex()]}))
    ring = SecretsManagerKeySource(arn, secrets, max_age_s=0).keyring()
    assert ring.current == C and ring.accepted == (C, B, A)


def test_three_rotations_keep_every_retired_key_and_the_oldest_marked_audio_verifies(
        secrets, tmp_path):
    arn = new_secret(secrets, A.to_hex())  # the plain-hex secret the template starts with
    tokens = [rotate_once(secrets, arn) for _ in range(3)]
    ring = SecretsManagerKeySource(arn, secrets, max_age_s=0).keyring()
    assert len(set(tokens)) == 3 and len(ring.accepted) == 4
    assert ring.accepted[-1] == A and ring.current != A  # newest first, the first key last
    stored = KeySecret.parse(secrets.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")[
        "SecretString"])
    assert stored.current == ring.current.to_hex() and stored.previous[-1] == A.to_hex()
    stages = secrets.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[tokens[-1]] and "AWSPREVIOUS" in stages[tokens[-2]]

    # audio marked under the oldest key, verified through the secret after three rotations
    rate = 16_000
    host = speechlike(6.0, rate, seed=3)
    marked = embed(host, rate, A, 0x00000000A1)
    source = SecretsManagerKeySource(arn, secrets, max_age_s=0)
    accepted = source.keyring().accepted
    found = with_key_bound(detect(marked, rate, accepted), len(accepted))
    assert found.found and found.key_id == A.key_id and found.record_id == 0xA1
    # the printed bound counts every key tried: 23 x k x 2^-24 with k = 4
    assert found.p_false == pytest.approx(MAX_ATTEMPTS * 4 * 2.0**-24)


def test_a_rotation_step_run_twice_makes_one_version(secrets):
    arn = new_secret(secrets, A.to_hex())
    token = str(uuid.uuid4())
    rotate(secrets, arn, token, "createSecret")
    pending = secrets.get_secret_value(SecretId=arn, VersionStage="AWSPENDING")["SecretString"]
    rotate(secrets, arn, token, "createSecret")  # Secrets Manager retries steps
    assert secrets.get_secret_value(SecretId=arn, VersionStage="AWSPENDING")[
        "SecretString"] == pending
    for step in ("setSecret", "testSecret", "finishSecret", "finishSecret"):
        rotate(secrets, arn, token, step)
    assert SecretsManagerKeySource(arn, secrets, max_age_s=0).keyring().accepted[1:] == (A,)


def test_a_rotation_that_forgot_the_history_still_leaves_awsprevious_verifying(secrets):
    arn = new_secret(secrets, json.dumps({"current": A.to_hex(), "previous": []}))
    secrets.put_secret_value(SecretId=arn, SecretString=B.to_hex())  # by hand, no history
    assert SecretsManagerKeySource(arn, secrets, max_age_s=0).keyring().accepted == (B, A)


@pytest.mark.parametrize("value", [
    json.dumps({"current": "zz" * 32}),
    json.dumps({"current": A.to_hex(), "previous": ["12"]}),
    json.dumps({"current": A.to_hex(), "extra": 1}),
    json.dumps({"current": A.to_hex(), "previous": [B.to_hex()] * (MAX_KEY_HISTORY + 1)}),
])
def test_a_malformed_json_secret_is_a_key_error_that_does_not_echo_it(value):
    with pytest.raises(KeyError_) as err:
        KeySecret.parse(value)
    assert "zz" not in err.value.message and B.to_hex() not in err.value.message


def test_the_history_is_bounded_and_a_full_history_refuses_to_rotate():
    full = KeySecret(current=A.to_hex(), previous=tuple(
        WatermarkKey.from_hex(f"{i:064x}").to_hex() for i in range(1, MAX_KEY_HISTORY + 1)))
    with pytest.raises(KeyError_, match="at most"):
        full.rotated(B)
    assert KeySecret.parse(A.to_hex()).rotated(B) == KeySecret(current=B.to_hex(),
                                                               previous=(A.to_hex(),))


def test_the_unknown_rotation_step_is_refused(secrets):
    arn = new_secret(secrets, A.to_hex())
    with pytest.raises(KeyError_, match="unknown rotation step"):
        rotate(secrets, arn, str(uuid.uuid4()), "dropSecret")


def test_the_rotation_function_runs_the_steps_secrets_manager_sends(secrets, moto_endpoint,
                                                                    monkeypatch):
    from fakes import LambdaContext
    from voxproof.handlers import rotate as rotation

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # botocore reads it, as on Lambda none
    monkeypatch.setattr(rotation, "_AWS", AwsClients())  # a client made under this environment
    arn = new_secret(secrets, A.to_hex())
    token = str(uuid.uuid4())
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        rotation.handler({"SecretId": arn, "ClientRequestToken": token, "Step": step},
                         LambdaContext())
    ring = SecretsManagerKeySource(arn, secrets, max_age_s=0).keyring()
    assert ring.current != A and ring.accepted[1:] == (A,)
