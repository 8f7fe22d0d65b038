"""The API functions' Lambda entry point (``voxproof.handlers.api.handler``, template.yaml's
speech and verify functions; ``voxproof serve`` runs it too).

Importing this module is the container's init: it reads the settings once and builds the one
runtime every invocation reuses, loading the voice now when ``VOXPROOF_PRELOAD_VOICE`` is set
(the speech function; the verify function never loads it, nor imports the synthesis stack).
The API itself is ``voxproof.handlers.rest``; tests build their own runtime and handler there.
"""

from voxproof.handlers.rest import api_runtime, make_handler
from voxproof.settings import Settings

RUNTIME = api_runtime(Settings())
handler = make_handler(RUNTIME)
