"""voxproof.aws_errors: one reading of S3's answers for every S3 caller (API and batch)."""

from __future__ import annotations

import doctest

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from voxproof import aws_errors
from voxproof.aws_errors import S3Fault, s3_fault


def test_docstring_examples_run():
    assert doctest.testmod(aws_errors).failed == 0


@pytest.mark.parametrize(("code", "fault"), [
    ("NoSuchKey", S3Fault.MISSING), ("NoSuchVersion", S3Fault.MISSING),
    ("404", S3Fault.MISSING), ("NotFound", S3Fault.MISSING),
    ("403", S3Fault.DENIED), ("AccessDenied", S3Fault.DENIED), ("Forbidden", S3Fault.DENIED),
    ("PreconditionFailed", S3Fault.CHANGED), ("412", S3Fault.CHANGED),
    ("SlowDown", S3Fault.UNAVAILABLE), ("InternalError", S3Fault.UNAVAILABLE),
    ("", S3Fault.UNAVAILABLE),
])
def test_s3_answers_are_read_by_their_code(code, fault):
    assert s3_fault(ClientError({"Error": {"Code": code}}, "GetObject")) is fault


def test_no_answer_at_all_is_unavailable_and_a_bug_is_not_caught():
    for exc in (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
                ReadTimeoutError(endpoint_url="http://127.0.0.1:1")):
        assert isinstance(exc, aws_errors.aws_errors())
        assert s3_fault(exc) is S3Fault.UNAVAILABLE
    assert not isinstance(TypeError("a bug"), aws_errors.aws_errors())
