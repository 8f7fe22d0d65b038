"""voxproof.handlers.http and .storage: the pure parts of reading API Gateway events and of the
S3 key policy (the S3 calls themselves run against moto in tests/integration)."""

from __future__ import annotations

import base64

import pytest
from voxproof.errors import Forbidden, MalformedRequest
from voxproof.handlers import http
from voxproof.handlers.storage import InputBucket


@pytest.mark.parametrize(("accept", "wav"), [
    ("audio/wav", True),
    ("audio/x-wav", True),
    ("audio/*", True),
    ("audio/wav;q=0.9, application/json", False),
    ("application/json;q=0.5, audio/wav", True),
    ("application/json, audio/*;q=0.5", False),
    ("*/*", False),
    ("audio/wav;q=0", False),
    ("audio/wav;q=nonsense", False),
    ("text/html", False),
    ("", False),
    (None, False),
])
def test_wants_wav_follows_the_q_values_and_prefers_json_on_ties(accept, wav):
    assert http.wants_wav(accept) is wav


def test_caller_is_the_api_key_id_never_the_key():
    context = {"identity": {"apiKey": "s3cr3t-key-value", "apiKeyId": "abc123",
                            "userArn": "arn:aws:iam::1:user/x", "sourceIp": "198.51.100.7"}}
    assert http.caller_identity(context) == "apikey:abc123"


@pytest.mark.parametrize(("identity", "caller"), [
    ({"userArn": "arn:aws:iam::1:user/x", "sourceIp": "198.51.100.7"}, "iam:arn:aws:iam::1:user/x"),
    ({"sourceIp": "198.51.100.7"}, "ip:198.51.100.0/24"),
    ({"sourceIp": "2001:db8:1234:5678::1"}, "ip:2001:db8:1234::/48"),
    ({"sourceIp": "not an address"}, "ip:unknown"),
    ({}, "anonymous"),
])
def test_caller_falls_back_to_the_principal_then_the_network(identity, caller):
    assert http.caller_identity({"identity": identity}) == caller


def test_body_size_counts_base64_bodies_decoded_without_decoding():
    raw = bytes(range(256)) * 40
    event = {"body": base64.b64encode(raw).decode(), "isBase64Encoded": True}
    assert abs(http.body_size(event) - len(raw)) <= 2
    assert http.body_bytes(event) == raw
    assert http.body_size({"body": "héllo"}) == 5 and http.body_size({"body": None}) == 0


def test_a_body_marked_base64_that_is_not_is_malformed():
    with pytest.raises(MalformedRequest):
        http.body_bytes({"body": "not base64!", "isBase64Encoded": True})


def test_headers_are_found_whatever_their_case():
    event = {"headers": {"content-TYPE": "audio/wav; codecs=1"}}
    assert http.media_type(http.header(event, "Content-Type")) == "audio/wav"
    assert http.header(event, "accept") is None and http.media_type(None) == ""


@pytest.mark.parametrize("key", ["verify/a.wav", "verify/2026/11/clip.mp3", "verify/..wav"])
def test_keys_under_verify_are_allowed(key):
    InputBucket.check_key(key)


@pytest.mark.parametrize("key", ["jobs/a.jsonl", "verify/", "verify", "speech/x.wav",
                                 "verify/../jobs/a.jsonl", "verify/./a.wav", "/verify/a.wav",
                                 "Verify/a.wav"])
def test_keys_elsewhere_are_forbidden_without_naming_the_bucket(key):
    with pytest.raises(Forbidden) as err:
        InputBucket.check_key(key)
    assert err.value.status == 403 and "bucket-name" not in err.value.message


@pytest.mark.parametrize("module", ["http", "storage", "api_models"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"voxproof.handlers.{module}"))
    assert result.failed == 0 and result.attempted > 0
