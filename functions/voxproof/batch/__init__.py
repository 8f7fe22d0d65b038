"""Batch jobs from SQS messages and ``jobs/*.jsonl`` files: each run once, results in S3.

Modules: jobs (pure models), aws (S3, SQS), idempotency, runner, intake, exceptions.
"""
