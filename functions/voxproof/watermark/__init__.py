"""voxproof's keyed, authenticated audio watermark (numpy/scipy; ours, from published methods).

Public surface::

    key = WatermarkKey.generate()                       # or from_hex / read_key_file
    marked = embed(samples, sample_rate, key, record_id)  # float32 (n,) or (n, ch), any 8-48 kHz
    found = detect(marked, sample_rate, [key, old_key])   # -> Detection (.to_dict() for JSON)

Algorithm
---------
*Internal domain.* Everything happens on an 8 kHz mono version of the input (``resample_poly``);
the mark is computed there as a residual (marked - host), brought back to the caller's rate and
added to every channel. So any rate from 8 to 48 kHz works, and the mark lives in 125-3625 Hz,
the band that 8 kHz resampling, a 4 kHz low-pass and speech codecs keep.

*Features.* A 256-point (32 ms) Hann STFT every 4 ms gives tile energies: a tile is one 125 Hz
band (4 bins; 28 bands) times one 32 ms slot. A *cell* is the pair of tiles in one band and in
the two slots of a 64 ms block; its value is ``log E(slot 1) - log E(slot 2)``. Fixed filters
and volume changes add the same amount to both logs and cancel.

*Modulation.* Each cell carries one bit by distortion-compensated dither modulation (DC-QIM,
Chen & Wornell 2001; Eggers et al.'s scalar Costa scheme): the cell value is moved ``ALPHA =
0.7`` of the way to the nearest point of the lattice ``(dither + bit / 2 + k) * STEP``, STEP =
0.39 (natural log of energy), the dither being a per-cell key-derived fraction. This informed
embedding cancels the host's interference, which is what lets 64 bits fit in about a second;
additive spread spectrum would need tens of seconds (audiowmark's 128-bit block needs ~52 s).
The embedder applies per-tile gains on a 75 %-overlap STFT and re-measures four times so the
values the detector will measure hit their targets; gains are clipped to +-1 neper, and the
residual is scaled down if it would come within 30.5 dB of the host (8 kHz band).

*Silence.* Only blocks whose two slots are within 40 dB of the loudest slots (99th percentile)
and above about -80 dBFS are modified; pauses and silence get exactly nothing (the residual is
zero 16 ms away from speech; tested).

*Unit and payload.* One unit is 16 blocks (1.024 s) x 28 bands = 448 cells, repeated
identically over the whole input (so any 1.024 s of it holds every cell once). The payload is
64 bits: a 40-bit record id and a 24-bit tag, ``HMAC-SHA256(key, "voxproof tag" || id)[:3]``.
It is coded by a tail-biting convolutional code (rate 1/3, K = 7, generators 133/171/165) into
192 coded bits; with 32 key-derived pilot bits that makes 224 positions, each carried by two
cells in key-chosen blocks and bands (keyed interleaving, time and frequency diversity).

*Keys.* A 256-bit secret. Every pseudo-random choice (cell-to-position map, pilot/payload roles,
pilot bits, dithers) comes from AES-256-CTR keystreams keyed with ``HMAC-SHA256(key, label)``;
the public key id is ``HMAC-SHA256(key, "voxproof key id")[:8]`` in hex. Without the key the
lattice offsets are uniformly random: the mark can neither be read nor forged.

*Detection.* Scale hypotheses: none, and speed changes of -3 % .. +3 % in 0.5 % steps
(undone exactly by resampling the 8 kHz signal back); sub-hop offsets of 0, 1, 2, 3 ms (0 and
2 ms for speed hypotheses; cell values move ~0.07 neper per ms of shift, so this matters for
cuts). For each, every cell value becomes a weighted phasor ``w exp(2 pi i v / STEP)`` (w:
speech activity times tile loudness, falling by e per 10 dB below the loudest tiles; without
speed change a second, flatter weighting, e per 20 dB, is tried too), and phasors are folded
modulo the unit length: soft combining of all repeats. For the
256 possible unit alignments a pilot correlation, and the pilots plus a blind second-harmonic
statistic of the payload cells, are computed with length-16 FFTs; the best alignments (4 s
windows, half overlapping) are decoded (soft Viterbi on the folded soft values, once over the
whole input with the alignment tracked +-24 frames per window, once over the window alone) and
accepted only if the keyed tag verifies. If none verifies, a last attempt follows the
alignment 256 ms at a time: WSOLA tempo changes (ffmpeg atempo) copy the input at its own rate
in pieces of 100-300 ms and skip or repeat a few ms between pieces, so the alignment is
constant within a piece and jumps between pieces. A Viterbi path over (alignment, sub-hop
phase) states, each window scored by pilots and the blind statistic, with moves between no
drift and twice a tempo rate's drift (rates -3, -1.5, 0, 1.5, 3 %), gives a fold; its decode is
re-encoded to re-score the windows with the whole codeword and the path is followed again
(decision feedback, 5 rounds); only the final decode counts as an attempt. Several keys are
tried in turn; the first that verifies is reported. Then 1.024 s windows (half overlapping) are scored against the decoded
codeword at their best alignment (``windows``): z >= 5 is "marked"; windows without speech
join their neighbours; adjacent equal windows merge into ``segments``, so a foreign piece
spliced between marked ones shows as an unmarked range.

False positives
---------------
On audio that does not carry a mark of the key, decoded bits are independent of the key's HMAC
tag, so one decode attempt verifies with probability 2^-24. Per key at most ``MAX_ATTEMPTS`` =
13 attempts are made (2 for an early candidate without speed change, 2 for each of 5 more, 1
for the followed alignment), so

    P(false positive per file) <= 13 * k * 2^-24 ~= 7.7e-7 * k   (k keys tried),

whatever the file's length. ``Detection.p_false`` reports ``attempts * 2^-24`` for the attempts
actually made. Measured: 0 false positives on 2,000 unmarked clips (speech-like, noise, tones,
chords, sweeps, music-like, clicks, near-silence; tests/test_watermark.py) and 0 of 282
attacked unmarked corpus clips (scripts/bench_watermark.py).

Measured (scripts/bench_watermark.py, 14 piper-tts utterances of 3-27 s, 154 s in all)
--------------------------------------------------------------------------------------
SNR 30.95 dB mean (min 30.51), PESQ-WB 4.630 mean (min 4.601); embed RTF 0.006, detect RTF
0.031 (mean over all attacked marked clips, one thread, process CPU time on a shared 2-core
machine); 0.008 when the mark is found at once, about 0.06 when every hypothesis and the
followed alignment must be tried (inputs without a mark, 32 kbps codecs, tempo changes). Exact record-id recovery, mean 87 %
over the 21 attacks (audiowmark 0.6.5: 66 %): 100 % for none, mp3 128k/64k, resample
16k/8k, noise 30 dB, volume -10/+6 dB (clipping), low-pass 4 kHz, crops of 10/5/3/2 s, speed
+-3 %; noise 20 dB 92.9 % (target 80); aac 64k 92.9 % (target 99: the 3.2 s clip fails);
tempo +3 % 85.7 % and -3 % 57.1 % (target 90: short clips, and long ones where the followed
path loses the alignment). 0 false positives on the 282 attacked unmarked clips.
Not met at all: mp3 32k and opus 32k, 0 %: these codecs keep band energies only to about 1 dB
in most bands while a cell moves by ~0.1 neper; only 125-625 Hz survive (cells there are right
65-85 % of the time), too few positions to decode. Tried and rejected: quantiser steps rising
with frequency, spread-transform pairs of adjacent bands, narrower bands below 1 kHz (all no
better at the same SNR), other DC-QIM strengths (ALPHA 0.55-0.85), tempo hypotheses that
stretch the frame axis linearly (0 %: WSOLA pieces run at the original rate, so a linear
stretch misaligns them by up to the skip size, and cell values move ~0.07 neper per ms).
"""

from voxproof.watermark.detect import Detection, Segment, detect
from voxproof.watermark.embed import embed
from voxproof.watermark.keys import WatermarkKey
from voxproof.watermark.payload import RECORD_ID_BITS, TAG_BITS

__all__ = ["RECORD_ID_BITS", "TAG_BITS", "Detection", "Segment", "WatermarkKey", "detect", "embed"]
