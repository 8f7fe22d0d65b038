"""``GET /v1/health``: version, voice, pinned model manifest digest, whether the voice is
loaded, and whether the keys and layer are usable (503 when not). It is open to anyone, so it
names no key, not even by id."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from voxproof import __version__
from voxproof.errors import LayerError, VoxproofError
from voxproof.handlers.api_models import HealthResponse
from voxproof.handlers.routes.base import ERRORS, JSON_TYPE, json_response, runtime
from voxproof.settings import Settings
from voxproof.voice.manifest import read_manifest


def router() -> Router:
    """The health route."""
    routes = Router()

    @routes.get(
        "/v1/health",
        summary="Version, voice, model layer digest and checks (no key ids, no secrets)",
        responses={
            **ERRORS,  # a body over the limit (413), another method (405), ...
            200: {"description": "Healthy", "content": {JSON_TYPE: {"model": HealthResponse}}},
            503: {"description": "Degraded", "content": {JSON_TYPE: {"model": HealthResponse}}},
        },
    )
    def health():
        rt = runtime(routes)
        checks: dict[str, str] = {}
        loaded = rt.service.loaded_voice
        voice = loaded.name if loaded is not None else _layer_voice(rt.settings, checks)
        checks.setdefault("layer", "ok" if voice is not None else "invalid")
        try:
            rt.service.keys.keyring()
            checks["keys"] = "ok"
        except VoxproofError as err:
            checks["keys"] = err.code
        healthy = all(value == "ok" for value in checks.values())
        return json_response(200 if healthy else 503, {
            "status": "ok" if healthy else "degraded", "version": __version__, "voice": voice,
            "model_manifest_sha256": rt.settings.model_manifest_sha256,
            "voice_loaded": loaded is not None, "checks": checks,
        })

    return routes


def _layer_voice(settings: Settings, checks: dict[str, str]) -> str | None:
    """The voice's name from the layer's manifest, if it is the pinned one (the voice is not
    loaded in this container: the verify function never loads it)."""
    try:
        manifest = read_manifest(settings.model_dir / "manifest.json")
    except (LayerError, OSError):
        checks["layer"] = "layer_not_found"
        return None
    if manifest.sha256() != settings.model_manifest_sha256:
        checks["layer"] = "manifest_digest_mismatch"
        return None
    return manifest.model.name
