"""The voice: load it, then synthesize. Everything else in this package is the model layer.

Public surface (Piper-like): :func:`load_voice` -> :class:`Voice`;
:meth:`Voice.synthesize` -> :class:`Speech`. See ``voxproof.voice.synthesis`` for the pipeline,
the deadline checks and the calibration.

Modules: ``synthesis`` (the voice above), ``manifest`` (the manifest's schema), ``pins``
(pinned digests), ``layer`` (verify a layer folder before any weight is read), ``engine`` (load
and run the Coqui ``Vits`` model), ``phonemize`` (text -> Piper phoneme ids). Building a layer
is not run-time work: ``voxproof.layer_build`` (the ``[build]`` extra) does it.

The package's ``__init__`` imports nothing: the public names come from ``synthesis`` when first
asked for, so the settings (``pins``) and the verify function (``manifest``) stay light.

Example:
    >>> from voxproof.deadline import Deadline
    >>> from voxproof.settings import Settings
    >>> voice = load_voice(Settings())  # doctest: +SKIP
    >>> speech = voice.synthesize("Hello.", deadline=Deadline.after(10), max_chars=1000)  # doctest: +SKIP
    >>> round(speech.duration_s, 1), speech.voice  # doctest: +SKIP
    (0.6, 'en_US-joe-medium')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxproof.voice.synthesis import CostModel, Speech, Voice, load_voice

__all__ = ["CostModel", "Speech", "Voice", "load_voice"]


def __getattr__(name: str) -> Any:
    """The public names, imported from ``synthesis`` on first use: importing a light submodule
    (``pins``, ``manifest``, ``layer``) never loads the synthesis stack (text, torch, espeak)."""
    if name in __all__:
        return getattr(importlib.import_module("voxproof.voice.synthesis"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
