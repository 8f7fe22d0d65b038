"""template.yaml: cfn-lint clean (offline, with the SAM transform) and the properties the
service relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


_Loader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)


def test_cfn_lint_is_clean():
    exe = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which(
        "cfn-lint")
    assert exe, "cfn-lint is a dev dependency"
    out = subprocess.run([exe, str(TEMPLATE)], check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_functions_share_one_image_and_pick_their_handler(template):
    res = template["Resources"]
    functions = {k: v for k, v in res.items() if v["Type"] == "AWS::Serverless::Function"}
    assert set(functions) == {"SpeechFunction", "VerifyFunction", "BatchFunction"}
    for name, fn in functions.items():
        props = fn["Properties"]
        assert props["PackageType"] == "Image", name
        assert props["ImageConfig"]["Command"][0].startswith("voxproof.handlers."), name
        assert props["ReservedConcurrentExecutions"] > 0, name
        assert fn["Metadata"]["Dockerfile"] == "functions/Dockerfile"
    assert template["Globals"]["Function"]["Tracing"] == "Active"


def test_queue_visibility_is_six_times_the_batch_timeout_and_has_a_dlq(template):
    res = template["Resources"]
    timeout = res["BatchFunction"]["Properties"]["Timeout"]
    queue = res["JobsQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"GetAtt": "JobsDeadLetterQueue.Arn"}
    sqs_event = res["BatchFunction"]["Properties"]["Events"]["Jobs"]["Properties"]
    assert sqs_event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_buckets_are_private_encrypted_and_expire(template):
    res = template["Resources"]
    for name in ("InputBucket", "OutputBucket"):
        props = res[name]["Properties"]
        assert all(props["PublicAccessBlockConfiguration"].values()), name
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
        assert props["LifecycleConfiguration"]["Rules"][0]["Status"] == "Enabled", name


def test_tables_have_point_in_time_recovery(template):
    res = template["Resources"]
    for name in ("RecordsTable", "IdempotencyTable"):
        spec = res[name]["Properties"]["PointInTimeRecoverySpecification"]
        assert spec == {"PointInTimeRecoveryEnabled": True}, name


def test_api_requires_keys_throttles_and_accepts_binary_audio(template):
    api = template["Resources"]["Api"]["Properties"]
    assert api["Auth"]["ApiKeyRequired"] is True
    plan = api["Auth"]["UsagePlan"]
    assert plan["Throttle"]["RateLimit"] > 0 and plan["Quota"]["Limit"] > 0
    assert "audio~1*" in api["BinaryMediaTypes"]


def test_policies_are_scoped_to_resources_not_wildcards(template):
    res = template["Resources"]
    for name in ("SpeechFunction", "VerifyFunction", "BatchFunction"):
        for policy in res[name]["Properties"]["Policies"]:
            for statement in policy["Statement"]:
                assert statement["Resource"] != "*", name
                assert all(not a.endswith(":*") for a in statement["Action"]), name


def test_the_key_secret_is_generated_as_64_hex_characters(template):
    gen = template["Resources"]["WatermarkKeySecret"]["Properties"]["GenerateSecretString"]
    assert gen["PasswordLength"] == 64 and gen["ExcludeUppercase"] and gen["ExcludePunctuation"]
    allowed = set("0123456789abcdefghijklmnopqrstuvwxyz") - set(gen["ExcludeCharacters"])
    assert allowed == set("0123456789abcdef")


def test_the_batch_function_may_do_exactly_what_the_batch_code_does(template):
    res = template["Resources"]
    props = res["BatchFunction"]["Properties"]
    allowed: dict[str, set[str]] = {}
    for policy in props["Policies"]:
        for statement in policy["Statement"]:
            resource = statement["Resource"]
            name = resource.get("Sub") or resource.get("GetAtt") or resource.get("Ref")
            allowed.setdefault(name.rsplit("-${AWS::Region}", 1)[-1] or name, set()).update(
                statement["Action"])
    # voxproof.batch.aws.JobFileReader reads job files at the event's version.
    assert {"s3:GetObject", "s3:GetObjectVersion"} <= allowed["/jobs/*"]
    # voxproof.batch.aws.ResultStore: results, error objects (read, deleted), reports in batch/.
    assert {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"} <= allowed["/batch/*"]
    # a HEAD of a missing error object must answer 404, which needs ListBucket on the prefix
    [listing] = [s for p in props["Policies"] for s in p["Statement"]
                 if s["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["batch/*"]}}
    assert "sqs:SendMessage" in allowed["JobsQueue.Arn"]
    # marking and uploading the longest job's audio fit in what each invocation holds back
    from voxproof.settings import Settings

    margin = props["Environment"]["Variables"]["VOXPROOF_DEADLINE_MARGIN_S"]
    assert Settings(deadline_margin_s=margin).deadline_margin_s >= 10
    assert {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem",
            "dynamodb:DeleteItem"} <= allowed["IdempotencyTable.Arn"]


def test_failed_job_file_events_land_in_a_watched_queue(template):
    res = template["Resources"]
    invoke = res["BatchFunction"]["Properties"]["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS", "Destination": {"GetAtt": "JobFilesFailedQueue.Arn"}}
    alarm = res["JobFilesFailedAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"GetAtt": "JobFilesFailedQueue.QueueName"}


def test_every_api_route_of_the_handler_is_an_api_event_and_only_speech_preloads(template):
    from voxproof.handlers.rest import ROUTES

    res = template["Resources"]
    events = {(e["Properties"]["Path"], e["Properties"]["Method"].upper())
              for name in ("SpeechFunction", "VerifyFunction")
              for e in res[name]["Properties"]["Events"].values() if e["Type"] == "Api"}
    assert events == {(path, method) for path, methods in ROUTES.items() for method in methods}
    speech_env = res["SpeechFunction"]["Properties"]["Environment"]["Variables"]
    assert speech_env["VOXPROOF_PRELOAD_VOICE"] == "true"
    assert "Environment" not in res["VerifyFunction"]["Properties"]  # verify never loads it
    for name in ("SpeechFunction", "VerifyFunction"):
        assert res[name]["Properties"]["Timeout"] <= 29  # API Gateway's integration timeout
