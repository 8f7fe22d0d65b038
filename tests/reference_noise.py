"""The noise the torch engine drew before 2026-12-03, fed to any engine.

Until then a seed meant ``torch.manual_seed(seed)`` and Coqui's own draws on the torch engine,
and numpy's PCG64 on the ONNX engine: the same seed, two different samples of the model. The
intelligibility reference (pocketsphinx WER 22.6 % on the 30 sentences, seed base 2024) was
measured on that torch noise. :class:`TorchRngNoise` redraws it exactly (torch's generator,
Coqui's shapes and draw order) and feeds it through an engine's ``noise=`` input, so the
default engine can be judged on the very noise the reference was (docs/voice.md,
"Intelligibility of the two engines").
"""

from __future__ import annotations

import numpy as np


class TorchRngNoise:
    """An engine whose ``infer(ids, seed=s)`` uses the noise the torch engine drew for ``s``.

    Coqui's ``Vits.inference`` draws ``torch.randn(1, 2, ids)`` (the duration predictor) and
    then ``torch.randn_like(m_p)``, ``[1, channels, frames]``; ``m_p`` comes out of an einsum
    frames-major, and ``randn_like`` keeps its strides, which sets the order the values are
    drawn in. The frame count follows from the first draw, so a first call (any prior noise)
    finds it and a second one speaks with the real draw.
    """

    def __init__(self, engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def infer(self, ids, *, seed: int | None = None, **kwargs) -> np.ndarray:
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        dp = torch.randn(1, 2, len(ids), generator=generator)[0].T.numpy().copy()
        engine = self._engine.manifest.engine
        channels = next(n.columns for n in engine.onnx.noise_inputs if n.name == "noise_z")
        probe = np.zeros((64 * len(ids), channels), np.float32)
        frames = len(self._engine.infer(ids, noise=(dp, probe), **kwargs)) // engine.settings.hop_length
        z = torch.empty_strided((1, channels, frames), (channels * frames, 1, channels))
        z = z.normal_(generator=generator)[0].T.numpy().copy()
        return self._engine.infer(ids, noise=(dp, z), **kwargs)
