"""C2PA Content Credentials for every output, with the watermark as their soft binding.

``manifest`` builds what a manifest says (pure), ``identity`` holds the signing certificate and
key (a local CA and ES256 leaf in the state folder), ``signer`` embeds a signed manifest store in
encoded audio (c2pa-python), ``reader`` validates an embedded or stored manifest store against
trust anchors. Guarantees: a manifest never holds the text or the caller; the local signing key
is written mode 0600. Design and numbers: docs/credentials.md.
"""

from typing import Final

from voxproof.credentials.manifest import (
    ALGORITHM,
    DIGITAL_SOURCE_TYPE,
    FORMATS,
    MIME_TYPES,
    manifest_definition,
)

#: The local identity's files in its folder (``identity``); here so that a verify can find the
#: CA to trust without importing cryptography.
CA_FILE: Final = "ca.pem"
CERT_FILE: Final = "signer.pem"
KEY_FILE: Final = "signer.key"

__all__ = ["ALGORITHM", "CA_FILE", "CERT_FILE", "DIGITAL_SOURCE_TYPE", "FORMATS", "KEY_FILE",
           "MIME_TYPES", "manifest_definition"]
