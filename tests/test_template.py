"""template.yaml: cfn-lint clean (offline, with the SAM transform) and the properties the
service relies on."""

from __future__ import annotations

import json
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
    assert set(functions) == {"SpeechFunction", "VerifyFunction", "BatchFunction",
                              "KeyRotationFunction"}
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


def _operations(template) -> dict[tuple[str, str], dict]:
    paths = template["Resources"]["Api"]["Properties"]["DefinitionBody"]["paths"]
    return {(path, method.upper()): op for path, ops in paths.items() for method, op in ops.items()}


def _security(op: dict, auth_mode: str) -> list[dict]:
    """An operation's OpenAPI ``security`` once CloudFormation resolves AuthMode's conditions."""
    truth = {"KeysOnly": auth_mode == "ApiKey", "IamOnly": auth_mode == "Iam",
             "UsesApiKeys": auth_mode != "Iam"}

    def resolve(value):
        if isinstance(value, dict) and set(value) == {"If"}:
            condition, yes, no = value["If"]
            return resolve(yes if truth[condition] else no)
        return value

    return resolve(op["security"])


def test_api_requires_keys_throttles_and_accepts_binary_audio(template):
    api = template["Resources"]["Api"]["Properties"]
    # ApiKey (the default AuthMode): every route but health needs a key
    assert template["Parameters"]["AuthMode"]["Default"] == "ApiKey"
    for (path, _), op in _operations(template).items():
        if path != "/v1/health":
            assert {"api_key": []} in _security(op, "ApiKey") or \
                {"api_key": [], "sigv4": []} in _security(op, "ApiKey"), path
    plan = template["Resources"]["SpeechUsagePlan"]["Properties"]
    assert plan["Throttle"]["RateLimit"] > 0 and plan["Quota"]["Limit"] > 0
    assert "audio~1*" in api["BinaryMediaTypes"]


@pytest.mark.parametrize("mode", ["ApiKey", "Iam", "Both"])
def test_auth_mode_picks_api_keys_iam_or_both_for_every_route_but_health(template, mode):
    assert template["Parameters"]["AuthMode"]["AllowedValues"] == ["ApiKey", "Iam", "Both"]
    schemes = template["Resources"]["Api"]["Properties"]["DefinitionBody"]["components"][
        "securitySchemes"]
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert schemes["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    wanted = {"ApiKey": {"api_key"}, "Iam": {"sigv4"}, "Both": {"api_key", "sigv4"}}[mode]
    for (path, method), op in _operations(template).items():
        [requirement] = _security(op, mode) or [{}]
        if path == "/v1/health":
            assert requirement == {}  # open: it names no key id and runs on verify's function
        elif path == "/v1/verify/detailed":  # auditors: always IAM, plus the key when keys are on
            assert set(requirement) == wanted | {"sigv4"}, mode
        else:
            assert set(requirement) == wanted, (path, mode)


def test_every_api_route_runs_on_the_function_meant_for_it(template):
    from voxproof.handlers.rest import ROUTES

    ops = _operations(template)
    assert set(ops) == {(path, method) for path, methods in ROUTES.items() for method in methods}
    for (path, _), op in ops.items():
        integration = op["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy" and integration["httpMethod"] == "POST"
        function = "SpeechFunction" if path == "/v1/speech" else "VerifyFunction"
        assert "${" + function + ".Arn}" in integration["uri"]["Sub"], path  # health: not speech
    res = template["Resources"]
    assert res["SpeechInvokePermission"]["Properties"]["SourceArn"]["Sub"].endswith(
        "/POST/v1/speech")


def test_usage_plans_per_role_throttle_each_key_below_the_stage_and_the_functions(template):
    res = template["Resources"]
    api = res["Api"]["Properties"]
    [stage] = [m for m in api["MethodSettings"] if m["ResourcePath"] == "/*"]
    slots = min(res[f]["Properties"]["ReservedConcurrentExecutions"]
                for f in ("SpeechFunction", "VerifyFunction"))
    plans = {name: res[f"{name}UsagePlan"]["Properties"] for name in ("Speech", "Verify", "Auditor")}
    for name, plan in plans.items():
        assert res[f"{name}UsagePlan"]["Condition"] == "UsesApiKeys"
        throttle = plan["Throttle"]
        # one key can use at most a fifth of the stage and of either function's slots
        assert throttle["RateLimit"] * 5 <= stage["ThrottlingRateLimit"], name
        assert throttle["BurstLimit"] * 2 < slots and throttle["BurstLimit"] * 5 <= \
            stage["ThrottlingBurstLimit"], name
        [api_stage] = plan["ApiStages"]
        assert api_stage["ApiId"] == {"Ref": "Api"} and api_stage["Stage"] == {"Ref": "Api.Stage"}
        for method, limits in api_stage["Throttle"].items():
            assert limits["RateLimit"] <= throttle["RateLimit"], (name, method)
    methods = {name: plan["ApiStages"][0]["Throttle"] for name, plan in plans.items()}
    # roles: only auditors reach the detailed answer, verify keys do not speak, and verify's
    # answers cannot be mined at the speech rate
    assert methods["Speech"]["/v1/verify/detailed/POST"] == {"RateLimit": 0, "BurstLimit": 0}
    assert methods["Verify"]["/v1/verify/detailed/POST"] == {"RateLimit": 0, "BurstLimit": 0}
    assert methods["Verify"]["/v1/speech/POST"] == {"RateLimit": 0, "BurstLimit": 0}
    assert methods["Auditor"]["/v1/speech/POST"] == {"RateLimit": 0, "BurstLimit": 0}
    assert methods["Auditor"]["/v1/verify/detailed/POST"]["RateLimit"] > 0
    assert methods["Speech"]["/v1/verify/POST"]["RateLimit"] < \
        methods["Speech"]["/v1/speech/POST"]["RateLimit"]
    assert plans["Verify"]["Throttle"]["RateLimit"] < plans["Speech"]["Throttle"]["RateLimit"]
    # the open health route has a ceiling of its own
    [health] = [m for m in api["MethodSettings"] if m["ResourcePath"] == "/v1/health"]
    assert health["ThrottlingRateLimit"] < stage["ThrottlingRateLimit"]


def test_auditors_are_named_by_a_parameter_and_granted_by_a_policy(template):
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["VOXPROOF_AUDITOR_PRINCIPALS"] == {"Ref": "AuditorPrincipals"}
    assert template["Parameters"]["AuditorPrincipals"]["Default"] == ""  # nobody by default
    policy = template["Resources"]["AuditorInvokePolicy"]["Properties"]["PolicyDocument"]
    [statement] = policy["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    assert any(r["Sub"].endswith("/POST/v1/verify/detailed") for r in statement["Resource"])
    client = template["Resources"]["ClientInvokePolicy"]["Properties"]["PolicyDocument"]
    assert not any("detailed" in r["Sub"] for r in client["Statement"][0]["Resource"])


def test_an_optional_waf_limits_each_ip_on_the_stage(template):
    res = template["Resources"]
    assert template["Parameters"]["EnableWaf"]["AllowedValues"] == ["true", "false"]
    assert template["Conditions"]["HasWaf"] == {"Equals": [{"Ref": "EnableWaf"}, "true"]}
    acl = res["WebAcl"]
    assert acl["Condition"] == "HasWaf" and acl["Properties"]["Scope"] == "REGIONAL"
    [rule] = acl["Properties"]["Rules"]
    rate = rule["Statement"]["RateBasedStatement"]
    assert rate["AggregateKeyType"] == "IP" and rate["Limit"] == {"Ref": "WafRateLimitPerIp"}
    assert rule["Action"] == {"Block": {}}
    association = res["WebAclAssociation"]
    assert association["Condition"] == "HasWaf"
    assert association["Properties"]["WebACLArn"] == {"GetAtt": "WebAcl.Arn"}
    assert association["Properties"]["ResourceArn"]["Sub"].endswith(
        "/restapis/${Api}/stages/${Api.Stage}")


def test_access_logs_and_every_function_log_to_groups_with_retention(template):
    res = template["Resources"]
    access = res["Api"]["Properties"]["AccessLogSetting"]
    assert access["DestinationArn"] == {"GetAtt": "ApiAccessLogGroup.Arn"}
    fields = json.loads(access["Format"])
    assert "$context.identity.apiKeyId" in fields.values()
    assert "$context.identity.apiKey" not in fields.values()  # the id, never the key
    groups = {name for name, r in res.items() if r["Type"] == "AWS::Logs::LogGroup"}
    for name in groups:
        assert res[name]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    for name, fn in res.items():
        if fn["Type"] == "AWS::Serverless::Function":
            group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            assert group in groups, name
            assert res[group].get("Condition") == fn.get("Condition"), name


def test_every_s3_call_can_name_the_bucket_owner(template):
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["VOXPROOF_BUCKET_OWNER"] == {"Ref": "AWS::AccountId"}
    from voxproof.settings import Settings

    assert Settings(bucket_owner="123456789012").bucket_owner == "123456789012"


def test_the_key_rotates_on_a_schedule_and_the_rotation_keeps_the_history(template):
    res = template["Resources"]
    schedule = res["KeyRotationSchedule"]
    assert schedule["Condition"] == "HasKeyRotation"
    props = schedule["Properties"]
    assert props["SecretId"] == {"Ref": "WatermarkKeySecret"}
    assert props["RotationLambdaARN"] == {"GetAtt": "KeyRotationFunction.Arn"}
    assert props["RotationRules"]["ScheduleExpression"] == {"Sub": "rate(${KeyRotationDays} days)"}
    assert props["RotateImmediatelyOnUpdate"] is False
    assert template["Parameters"]["KeyRotationDays"]["Default"] > 0
    fn = res["KeyRotationFunction"]["Properties"]
    assert fn["ImageConfig"]["Command"] == ["voxproof.handlers.rotate.handler"]
    [statement] = fn["Policies"][0]["Statement"]
    assert set(statement["Action"]) == {"secretsmanager:DescribeSecret",
                                        "secretsmanager:GetSecretValue",
                                        "secretsmanager:PutSecretValue",
                                        "secretsmanager:UpdateSecretVersionStage"}
    assert statement["Resource"] == {"Ref": "WatermarkKeySecret"}
    permission = res["KeyRotationPermission"]["Properties"]
    assert permission["Principal"] == "secretsmanager.amazonaws.com"


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
    events = set(_operations(template))  # the API's routes are its DefinitionBody's operations
    assert events == {(path, method) for path, methods in ROUTES.items() for method in methods}
    speech_env = res["SpeechFunction"]["Properties"]["Environment"]["Variables"]
    assert speech_env["VOXPROOF_PRELOAD_VOICE"] == "true"
    assert "Environment" not in res["VerifyFunction"]["Properties"]  # verify never loads it
    for name in ("SpeechFunction", "VerifyFunction"):
        assert res[name]["Properties"]["Timeout"] <= 29  # API Gateway's integration timeout


def test_the_5xx_alarm_watches_this_api_by_name(template):
    res = template["Resources"]
    [dimension] = res["ApiServerErrorsAlarm"]["Properties"]["Dimensions"]
    assert dimension["Value"] == res["Api"]["Properties"]["Name"]


def test_a_kms_key_signs_manifests_and_only_the_speaking_functions_may_sign(template):
    res = template["Resources"]
    key = res["C2paSigningKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    # The key policy names no function: Sign comes only from the functions' own policies.
    assert [s["Principal"] for s in key["KeyPolicy"]["Statement"]] == [
        {"AWS": {"Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}]

    def may(name: str, action: str) -> list:
        return [st["Resource"] for p in res[name]["Properties"].get("Policies", [])
                if isinstance(p, dict) for st in p.get("Statement", []) if action in st["Action"]]

    signers = {name for name, r in res.items() if r["Type"] == "AWS::Serverless::Function"
               and may(name, "kms:Sign")}
    assert signers == {"SpeechFunction", "BatchFunction"}
    for name in signers:
        assert may(name, "kms:Sign") == [{"GetAtt": "C2paSigningKey.Arn"}]
        env = res[name]["Properties"]["Environment"]["Variables"]
        assert env["VOXPROOF_C2PA_KMS_KEY_ID"] == {"GetAtt": "C2paSigningKey.Arn"}
        assert {"Ref": "C2paChainSecret"} in may(name, "secretsmanager:GetSecretValue")
        assert any("/manifests/*" in r["Sub"] for r in may(name, "s3:PutObject"))
    # verify reads the chain (to trust its root) and large stored manifests, and never signs
    assert {"Ref": "C2paChainSecret"} in may("VerifyFunction", "secretsmanager:GetSecretValue")
    assert any("/manifests/*" in r["Sub"] for r in may("VerifyFunction", "s3:GetObject"))
    glob = template["Globals"]["Function"]["Environment"]["Variables"]
    assert glob["VOXPROOF_C2PA_CHAIN_SECRET_ID"] == {"Ref": "C2paChainSecret"}
    assert "VOXPROOF_C2PA_KMS_KEY_ID" not in glob


def test_the_soft_binding_api_has_verifys_authentication_and_throttles(template):
    ops = _operations(template)
    c2pa_ops = {key: op for key, op in ops.items() if key[0].startswith("/v1/c2pa/")}
    assert set(c2pa_ops) == {("/v1/c2pa/matches/byBinding", "GET"),
                             ("/v1/c2pa/matches/byBinding", "POST"),
                             ("/v1/c2pa/matches/byContent", "POST"),
                             ("/v1/c2pa/manifests/{manifestId}", "GET"),
                             ("/v1/c2pa/services/supportedAlgorithms", "GET")}
    for mode in ("ApiKey", "Iam", "Both"):
        for op in c2pa_ops.values():
            assert _security(op, mode) == _security(ops[("/v1/verify", "POST")], mode)
    res = template["Resources"]
    for plan in ("SpeechUsagePlan", "VerifyUsagePlan", "AuditorUsagePlan"):
        throttle = res[plan]["Properties"]["ApiStages"][0]["Throttle"]
        verify = throttle["/v1/verify/POST"]
        for path, method in c2pa_ops:
            if path.endswith("supportedAlgorithms"):
                continue  # a constant answer: the plan's own throttle
            assert throttle[f"{path}/{method}"] == verify, (plan, path)
