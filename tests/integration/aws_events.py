"""Lambda-shaped events from real (moto) SQS messages and S3 notifications.

Lambda's SQS event source mapping polls the queue and invokes the function with the messages it
received, reshaped (``messageId``, ``body``, ``attributes``, ``messageAttributes``,
``eventSourceARN``...). ``sqs_event`` does that reshaping for messages a test received from the
moto queue. S3 sends the same notification JSON to Lambda as to a queue, so a test points the
input bucket's notifications at a moto queue and hands the received body to the handler as is.
"""

from __future__ import annotations

import json
from typing import Any


def queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"]


def receive_all(sqs: Any, url: str, expected: int | None = None, *,
                visibility_s: int = 600) -> list[dict[str, Any]]:
    """Every message now visible in the queue (hidden for ``visibility_s`` once received)."""
    found: list[dict[str, Any]] = []
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  VisibilityTimeout=visibility_s, MessageSystemAttributeNames=["All"],
                                  MessageAttributeNames=["All"]).get("Messages", [])
        found.extend(got)
        if not got or (expected is not None and len(found) >= expected):
            break
    return found


def visible_count(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def sqs_event(messages: list[dict[str, Any]], source_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping builds from received messages."""
    return {"Records": [_sqs_record(m, source_arn) for m in messages]}


def _sqs_record(message: dict[str, Any], source_arn: str) -> dict[str, Any]:
    attributes = {
        name: {"stringValue": value.get("StringValue"), "binaryValue": value.get("BinaryValue"),
               "stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"], "attributes": message["Attributes"],
            "messageAttributes": attributes, "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": source_arn, "awsRegion": "us-east-1"}


def s3_notifications(sqs: Any, url: str) -> list[dict[str, Any]]:
    """S3 event notifications delivered to a queue (test events left out)."""
    events = [json.loads(m["Body"]) for m in receive_all(sqs, url)]
    return [e for e in events if "Records" in e]
