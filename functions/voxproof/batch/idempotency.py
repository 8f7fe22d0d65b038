"""Once per id: Powertools' idempotency utility on a DynamoDB table, for batch jobs and job files.

``Idempotency.once(fn, prefix=..., key=..., validate=...)`` wraps ``fn`` so that a call whose
``claim`` (a small dict, the only thing hashed) names an id already stored returns the stored
result instead of running again. The table's item key is ``<prefix>#sha256(<key value>)``; with
``validate``, a sha256 of that claim field is stored too and a call whose field differs is a
``ClaimMismatch`` (a conflict, never a silent reuse). Stored results carry ``"replayed": True``
when they are returned again.

A failing call deletes its item (so the retry runs), and an item left "in progress" by an
invocation that died expires at that invocation's deadline (``register`` gives Powertools the
Lambda context), so a killed container never blocks a job for longer than its own timeout.

Powertools' own exceptions stop here: callers see ``ClaimMismatch``, ``JobInProgress`` (another
invocation holds the id right now; retry later) or ``Unavailable`` (the table).

Example:
    >>> table = Idempotency("voxproof-idempotency", dynamodb_client,
    ...                     expires_after_s=3600)                       # doctest: +SKIP
    >>> run = table.once(do_it, prefix="voxproof-job", key="job_id")    # doctest: +SKIP
    >>> run(claim={"job_id": "a"}, more="args")                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voxproof.batch.exceptions import JobInProgress
from voxproof.errors import Unavailable


class ClaimMismatch(Exception):
    """The id is stored with another validated field (the caller decides what that means)."""


class Idempotency:
    """Idempotent functions on one DynamoDB table (hash key ``id``, TTL ``expiration``).

    Parameters
    ----------
    table_name:
        The idempotency table (template.yaml: ``IdempotencyTable``).
    client:
        A boto3 DynamoDB client.
    expires_after_s:
        How long an id is remembered after it completed.
    """

    def __init__(self, table_name: str, client: Any, *, expires_after_s: int) -> None:
        self.table_name = table_name
        self._client = client
        self.expires_after_s = expires_after_s
        self._configs: list[Any] = []
        self._context: Any = None

    def once(self, fn: Callable[..., dict[str, Any]], *, prefix: str, key: str,
             validate: str | None = None) -> Callable[..., dict[str, Any]]:
        """``fn`` (called with keyword arguments, one of them ``claim``) made idempotent.

        Parameters
        ----------
        fn:
            Returns a JSON-serialisable dict (stored as the result).
        prefix:
            A stable name for this kind of id (the table key's prefix).
        key, validate:
            JMESPath expressions into ``claim``: the id, and the field that must match.
        """
        # Powertools' idempotency imports boto3: loaded when a function is made, not on import.
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        config = IdempotencyConfig(
            event_key_jmespath=key, payload_validation_jmespath=validate or "",
            raise_on_no_idempotency_key=True, expires_after_seconds=self.expires_after_s,
            hash_function="sha256", response_hook=_replayed, lambda_context=self._context,
        )
        self._configs.append(config)
        # One persistence layer per function: Powertools configures a layer only once.
        store = DynamoDBPersistenceLayer(table_name=self.table_name, boto3_client=self._client)
        wrapped = idempotent_function(fn, data_keyword_argument="claim", persistence_store=store,
                                      config=config, key_prefix=prefix)

        def call(**kwargs: Any) -> dict[str, Any]:
            return _translated(wrapped, kwargs)

        return call

    def register(self, context: Any) -> None:
        """Give every function this invocation's Lambda context (for in-progress expiry)."""
        self._context = context
        for config in self._configs:
            config.register_lambda_context(context)


def _replayed(response: Any, record: Any) -> Any:
    return {**response, "replayed": True} if isinstance(response, dict) else response


def _translated(wrapped: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyInconsistentStateError,
        IdempotencyKeyError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    try:
        return wrapped(**kwargs)
    except IdempotencyValidationError:
        raise ClaimMismatch() from None
    except IdempotencyAlreadyInProgressError:
        raise JobInProgress("another invocation is running this right now; it will be "
                            "retried") from None
    except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError,
            IdempotencyKeyError) as exc:
        raise Unavailable("the idempotency table cannot be reached") from exc
