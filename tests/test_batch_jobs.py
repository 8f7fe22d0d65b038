"""voxproof.batch.jobs: the job model, where results go, and job files parsed line by line
(pure: no AWS)."""

from __future__ import annotations

import doctest
import hashlib
import json

import pytest
from voxproof.batch import jobs
from voxproof.batch.exceptions import JobFileTooLarge, JobInvalid
from voxproof.batch.jobs import (
    Job,
    ResultKeys,
    job_address,
    job_fingerprint,
    parse_job,
    parse_job_file,
    report_key,
)
from voxproof.watermark import WatermarkKey

KEY_A = WatermarkKey.from_hex("a1" * 32)
KEY_B = WatermarkKey.from_hex("b2" * 32)
SECRET = "The board meets on Tuesday to discuss the merger"
FILE_SECRET = "Quarterly numbers are down nine percent"


def line(job_id: str, text: str = "Hello there.", **extra) -> bytes:
    return json.dumps({"job_id": job_id, "text": text, **extra}).encode()


def test_docstring_examples_run():
    assert doctest.testmod(jobs).failed == 0


# --- the job ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"job_id": "a", "text": "Hi."},
    {"job_id": "Ep-1.final_2", "text": "Hi.", "voice": "en_US-joe-medium"},
    {"job_id": "x" * 128, "text": "Hi.", "output_key": "podcasts/2024/week-1"},
])
def test_valid_jobs_parse(body):
    job = parse_job(json.dumps(body))
    assert job.model_dump(exclude_none=True) == body


@pytest.mark.parametrize(("body", "field", "problem"), [
    ({"job_id": "../x", "text": "Hi."}, "job_id", "value_error"),
    ({"job_id": ".hidden", "text": "Hi."}, "job_id", "value_error"),
    ({"job_id": "a/b", "text": "Hi."}, "job_id", "value_error"),
    ({"job_id": "x" * 129, "text": "Hi."}, "job_id", "value_error"),
    ({"job_id": 7, "text": "Hi."}, "job_id", "string_type"),
    ({"job_id": "a"}, "text", "missing"),
    ({"job_id": "a", "text": ["Hi."]}, "text", "string_type"),
    ({"job_id": "a", "text": "Hi.", "voice": "../joe"}, "voice", "value_error"),
    ({"job_id": "a", "text": "Hi.", "output_key": "/abs"}, "output_key", "value_error"),
    ({"job_id": "a", "text": "Hi.", "output_key": "a/../b"}, "output_key", "value_error"),
    ({"job_id": "a", "text": "Hi.", "output_key": "a//b"}, "output_key", "value_error"),
    ({"job_id": "a", "text": "Hi.", "output_key": "a/"}, "output_key", "value_error"),
    ({"job_id": "a", "text": "Hi.", "output_key": "a/.git"}, "output_key", "value_error"),
    ({"job_id": "a", "text": "Hi.", "output_key": "reports/x"}, "output_key", "value_error"),
    ({"job_id": "a", "text": "Hi.", "output_key": "a" * 257}, "output_key", "value_error"),
    ({"job_id": "a", "text": "Hi.", "priority": 1}, "priority", "extra_forbidden"),
])
def test_invalid_jobs_name_the_field_and_problem(body, field, problem):
    with pytest.raises(JobInvalid) as caught:
        parse_job(json.dumps(body))
    err = caught.value
    assert err.code == "invalid_job" and err.status == 400
    assert err.details["errors"][0] == {"field": field, "problem": problem}
    assert err.message.startswith(f"{field}: ")


@pytest.mark.parametrize(("body", "message"), [
    ("{not json", "the job is not valid JSON"),
    ("", "the job is not valid JSON"),
    ('["a", "b"]', "a job is a JSON object: {job_id, text, voice?, output_key?}"),
    ('"just text"', "a job is a JSON object: {job_id, text, voice?, output_key?}"),
])
def test_bodies_that_are_not_job_objects(body, message):
    with pytest.raises(JobInvalid, match=message.replace("?", r"\?").replace("{", r"\{")):
        parse_job(body)


def test_errors_never_echo_values_and_cut_long_field_names():
    with pytest.raises(JobInvalid) as caught:
        parse_job(json.dumps({"job_id": SECRET, "text": SECRET, "voice": SECRET}))
    assert "Tuesday" not in json.dumps(caught.value.to_dict())
    with pytest.raises(JobInvalid) as caught:
        parse_job(json.dumps({"job_id": "a", "text": "x", SECRET: 1}))
    public = json.dumps(caught.value.to_dict())
    assert "merger" not in public and "The board meets on Tuesday to di..." in public


def test_job_address_is_read_from_otherwise_invalid_jobs():
    assert job_address('{"job_id": "a", "text": 5, "output_key": "f/g"}') == ("a", "f/g")
    assert job_address('{"job_id": "a", "output_key": "../x"}') == ("a", None)
    assert job_address('{"job_id": "../a"}') is None
    assert job_address("nope") is None


def test_result_layout():
    assert ResultKeys.for_job("j1") == ResultKeys(
        "batch/j1.wav", "batch/j1.json", "batch/j1.error.json")
    assert ResultKeys.for_job("j1", "a/b").result == "batch/a/b/j1.json"


def test_fingerprint_is_keyed_and_changes_with_every_field():
    job = Job(job_id="a", text=SECRET)
    same = job_fingerprint(KEY_A, Job(job_id="other-id", text=SECRET))
    assert job_fingerprint(KEY_A, job) == same  # the id is the key, not part of the content
    others = {job_fingerprint(KEY_B, job),
              job_fingerprint(KEY_A, Job(job_id="a", text=SECRET + ".")),
              job_fingerprint(KEY_A, Job(job_id="a", text=SECRET, voice="v")),
              job_fingerprint(KEY_A, Job(job_id="a", text=SECRET, output_key="f"))}
    assert len(others) == 4 and same not in others
    assert same != hashlib.sha256(SECRET.encode()).hexdigest()


# --- job files -----------------------------------------------------------------------------------


def test_every_line_is_accepted_or_rejected_with_its_number():
    data = b"\n".join([
        b"\xef\xbb\xbf" + line("a"),                      # 1: a byte order mark is allowed
        line("b", output_key="f/g") + b"\r",              # 2: CRLF
        b"   ",                                           # 3: blank: skipped
        b"{oops",                                         # 4: not JSON
        b'{"job_id": "c", "text": "caf\xe9"}',            # 5: not UTF-8
        line("a", "Again."),                              # 6: duplicate id
        line("d", f"{FILE_SECRET}\u202e"),                # 7: bad text, with its position
        line("e", "x" * 101),                             # 8: too long for max_chars
        json.dumps({"job_id": "f", "txt": "typo"}).encode(),  # 9: schema
    ]) + b"\n"
    parsed = parse_job_file(data, max_chars=100, max_lines=9)
    assert parsed.lines == 9
    assert [(a.line, a.job.job_id) for a in parsed.accepted] == [(1, "a"), (2, "b")]
    assert parsed.accepted[1].job.output_key == "f/g"
    rejected = {r.line: (r.job_id, r.error["code"]) for r in parsed.rejected}
    assert rejected == {4: (None, "invalid_job"), 5: (None, "invalid_job"),
                        6: ("a", "duplicate_job_id"), 7: ("d", "format_character"),
                        8: ("e", "text_too_long"), 9: ("f", "invalid_job")}
    by_line = {r.line: r.error for r in parsed.rejected}
    assert by_line[5]["message"] == "the line is not valid UTF-8"
    assert by_line[6]["details"] == {"first_line": 1}
    assert by_line[7]["details"]["position"] == len(FILE_SECRET)
    assert FILE_SECRET not in json.dumps([r.to_dict() for r in parsed.rejected])


def test_too_many_lines_refuses_the_whole_file():
    assert parse_job_file(b"\n" * 10, max_chars=10, max_lines=10).lines == 10
    with pytest.raises(JobFileTooLarge) as caught:
        parse_job_file(b"\n" * 11, max_chars=10, max_lines=10)
    assert caught.value.details == {"lines": 11, "limit": 10}


def test_report_keys_mirror_the_job_file():
    assert report_key("jobs/a.jsonl") == "batch/reports/a.jsonl.json"
    assert report_key("jobs/x/y z.jsonl") == "batch/reports/x/y z.jsonl.json"
    long = report_key("jobs/" + "d/" * 500 + "a.jsonl")
    assert long.startswith("batch/reports/_long/") and len(long) < 120
