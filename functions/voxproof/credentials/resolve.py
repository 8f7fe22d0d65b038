"""The C2PA Soft Binding Resolution API over voxproof's registry (C2PA specification, "Soft
Binding Resolution API", OpenAPI 1.1.0): find manifests by a soft binding value or by the
content itself (the mark), and fetch a manifest store by its id.

A match is the manifest stored with the record the binding names; ``manifestId`` is that
manifest's label (``urn:c2pa:<uuid>``, whose low 40 bits are the record id). Only voxproof's own
algorithm (``ALGORITHM``) is supported; a query for another answers no matches. The route
adapter is ``voxproof.handlers.routes.c2pa``.

Example:
    >>> from voxproof.provenance import SQLiteRegistry
    >>> Resolver(SQLiteRegistry(":memory:")).by_binding(ALGORITHM, "ASNFZ4k=")
    {'matches': []}
"""

from __future__ import annotations

import io
from typing import Any, Final

from voxproof.credentials.manifest import (
    ALGORITHM,
    record_id_from_binding,
    record_id_from_label,
)
from voxproof.errors import NotFound, RequestError
from voxproof.provenance import Registry

#: The spec's default and our ceiling for ``maxResults`` (a binding names one record).
DEFAULT_MAX_RESULTS: Final = 10


class InvalidBinding(RequestError):
    """A soft binding value that is not base64 of a record id, or a bad manifest id."""

    code = "invalid_binding"
    status = 400


class Resolver:
    """Soft binding queries answered from one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @staticmethod
    def supported_algorithms() -> dict[str, Any]:
        """``GET /services/supportedAlgorithms``: voxproof's mark, a watermark."""
        return {"watermarks": [{"alg": ALGORITHM}], "fingerprints": []}

    def by_binding(self, alg: str, value: str, max_results: int = DEFAULT_MAX_RESULTS
                   ) -> dict[str, Any]:
        """``matches/byBinding``: the manifest kept with the record ``value`` names."""
        if alg != ALGORITHM:
            return {"matches": []}
        record_id = record_id_from_binding(value)
        if record_id is None:
            raise InvalidBinding(f"the value is not an {ALGORITHM} binding: base64 of a 40-bit "
                                 "record id (5 bytes)")
        return self.by_record(record_id, max_results)

    def by_record(self, record_id: int | None, max_results: int = DEFAULT_MAX_RESULTS
                  ) -> dict[str, Any]:
        """The match for a record found another way (``matches/byContent``: the mark)."""
        if record_id is None or max_results < 1:
            return {"matches": []}
        store = self.registry.get_manifest(record_id)
        label = None if store is None else store_label(store)
        if label is None:
            return {"matches": []}
        return {"matches": [{"manifestId": label, "similarityScore": 100}]}

    def manifest(self, manifest_id: str) -> bytes:
        """``manifests/{manifestId}``: the manifest store (``application/c2pa``). voxproof's
        stores hold one manifest, so ``returnActiveManifest`` returns the same bytes."""
        record_id = record_id_from_label(manifest_id)
        if record_id is None:
            raise InvalidBinding("not a voxproof manifest id (urn:c2pa:<uuid>)")
        store = self.registry.get_manifest(record_id)
        if store is None or store_label(store) != manifest_id.lower():
            raise NotFound("no manifest with this id")
        return store


def store_label(store: bytes) -> str | None:
    """The active manifest's label of a manifest store, or None if it cannot be read."""
    import c2pa

    try:
        with c2pa.Reader("application/c2pa", io.BytesIO(store)) as reader:
            return (reader.get_active_manifest() or {}).get("label")
    except c2pa.C2paError:
        return None
