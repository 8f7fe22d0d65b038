"""voxproof's keyed, authenticated audio watermark (numpy/scipy; ours, from published methods).

Public surface::

    key = WatermarkKey.generate()                       # or from_hex / read_key_file
    marked = embed(samples, sample_rate, key, record_id)  # float32 (n,) or (n, ch), any 8-48 kHz
    found = detect(marked, sample_rate, [key, old_key])   # -> Detection (.to_dict() for JSON)

Modules: ``analysis`` (the 8 kHz domain, tiles, cell levels and steps), ``pattern`` (the keyed
layout), ``payload`` and ``ecc`` (id + tag, convolutional code), ``embed``, ``views`` (the
detector's hypotheses and weighted cell phasors), ``align`` (folds, correlations, sync,
tracking, following), ``detect`` (the search and the report), ``keys``, ``timeline``.

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

*Steps by level.* Each cell's quantiser step depends on how far the cell lies below its block
(the block's mean power over all bands against the cell's mean log energy, both symmetric in
the two slots, so the mark barely moves them and volume, filters below 3 kHz and cuts leave
them alone): 0.15 neper for cells within 10 dB of their block's level, growing geometrically to
4 neper at 35 dB and below (``analysis.cell_steps``). Loud cells, which hold nearly all of the
energy and so of the SNR budget, move little; quiet cells, which cost almost nothing, move a
lot, enough to outlast the coarse band-energy coding of low-rate codecs (see Measured below:
this is what makes mp3/opus 32k and aac 64k survivable at SNR 30 dB).

*Modulation.* Each cell carries one bit by distortion-compensated dither modulation (DC-QIM,
Chen & Wornell 2001; Eggers et al.'s scalar Costa scheme): the cell value is moved ``ALPHA =
0.7`` of the way to the nearest point of the lattice ``(dither + bit / 2 + k) * step``, the
dither being a per-cell key-derived fraction. This informed embedding cancels the host's
interference, which is what lets 64 bits fit in about a second; additive spread spectrum would
need tens of seconds (audiowmark's 128-bit block needs ~52 s). The embedder applies per-tile
gains on a 75 %-overlap STFT and re-measures four times so the values the detector will measure
hit their targets; gains are clipped to +-1 neper, and the residual is scaled down if it would
come within 30.5 dB of the host (8 kHz band).

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

*Detection.* Hypotheses (``views``): no change at sub-hop offsets of 0, 1, 2, 3 ms (cuts fall
anywhere) under two weightings, then speed changes of +-1, 2, 3 % (band edges stretched and the
frame axis resampled on the one spectrogram; the residual error of at most 0.5 % is tracked).
Every cell value v becomes a phasor ``w exp(2 pi i v / step)`` with the step recomputed from
the received cell's level; w is speech activity times ``step / (step + 0.5)`` (coarse cells
survive codecs and small misalignments, fine ones less: the "codec" weighting) or that times a
fall of e per 10 dB for tiles more than 15 dB below the loudest ("noise" weighting: added
noise buries quiet tiles first). Phasors are folded modulo the unit: soft combining of all
repeats. For the 256 unit alignments a pilot correlation, and the pilots plus a blind
second-harmonic statistic of the payload cells, are computed per 4 s search window (matrix
products over bands and a cyclic gather over blocks). A strong alignment without speed change
(z >= 8) is decoded at once; else the 5 best distinct alignments are decoded (soft Viterbi),
each over the whole input tracked from it (2 s windows on a smooth path of pilot alignments)
and over its window alone, accepted only if the keyed tag verifies. If none verifies, a last
attempt follows the alignment 256 ms at a time: WSOLA tempo changes (ffmpeg atempo) copy the
input at its own rate in pieces of 0.1-0.6 s and skip or repeat 5-25 ms between pieces
(measured with a clock carried through atempo on extra channels), so the alignment is
constant within a piece and jumps between pieces. A Viterbi path over (alignment, sub-hop
phase) states, each window scored by pilots and the blind statistic, with moves between no
drift and twice a tempo rate's drift (rates -3, -1.5, 0, 1.5, 3 %), gives a fold; its decode is
re-encoded to re-score the windows with the whole codeword and the path is followed again
(decision feedback, 5 rounds); only the final decode counts as an attempt. Several keys are
tried in turn; the first that verifies is reported. Then 1.024 s windows (half overlapping)
are scored against the decoded codeword at their best alignment (``windows``): z >= 5 is
"marked"; windows without speech join their neighbours; adjacent equal windows merge into
``segments``, so a foreign piece spliced between marked ones shows as an unmarked range.

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

Measured (scripts/bench_watermark.py)
-------------------------------------
The default corpus, voxproof's own voice speaking the 14 texts of scripts/watermark_corpus.txt
(3.2-27.6 s, 158 s in all; 2026-11-26): exact record-id recovery 100 % on all 21 attacks, 0 of
282 attacked unmarked clips detected, SNR 30.93 dB mean (min 30.53), PESQ-WB 4.622 mean (min
4.569), embed RTF 0.0056, detect RTF 0.0097 on the attacked marked clips and 0.0237 for the full
search (one thread). Clips much shorter than the corpus's: a 1.024 s unit needs about that much
speech. Of 12 short texts spoken through the service, the 0.43 s one ("Hi.") carried no
decodable mark; the 11 of 0.65-1.93 s all verified unattacked, 9 after mp3 64k (the misses were
0.65 and 0.70 s long) and only 2 after mp3 32k.

With ``--corpus piper`` (the same texts by piper-tts, 154 s in all): exact record-id recovery
100 % on every one of the 21 attacks: none, mp3 128k/64k/32k, aac 64k,
opus 32k, resample 16k/8k, noise 30/20 dB, volume -10/+6 dB (clipping), low-pass 4 kHz, crops
of 10/5/3/2 s, WSOLA tempo +-3 %, speed +-3 % (audiowmark 0.6.5: 66 % mean); 0 false positives
on the 282 attacked unmarked clips. SNR 30.91 dB mean (min 30.52), PESQ-WB 4.627 mean (min
4.617). One thread, process CPU time on a shared 2-core machine: embed RTF 0.006; detect RTF
0.009 mean over the attacked marked clips (0.006 when the mark is found at once, 0.02 for
tempo), 0.027 for the full search (unmarked input, every stage). The margin is thinnest for
the shortest clip (3.2 s) through 32 kbps codecs: its codeword correlation is z ~ 12-14 where
decoding needs ~10; on random 3 s crops of the corpus after opus 32k / mp3 32k, 98 % / 93 %
are recovered (about as many as decode at the true alignment: capacity, not sync, is the limit).

Where the mark goes: with steps by level the mark sits 35-39 dB below the host in 125-750 Hz
and 16-20 dB below it in 1.6-3.6 kHz (it was ~30 dB everywhere with one step): quiet tiles
carry most of it. SNR and PESQ-WB are unchanged from the one-step design (30.95 dB, 4.630);
no listening test has been made.

How the design was chosen (scripts/measure_watermark_cells.py, exact alignment)
-----------------------------------------------------------------------------
Capacity below is ``sum 2 rho^2`` per second of speech (rho: mean cos of the lattice-phase error
of cells, ideal weighting), the squared z one second of cells gives; a decode needs ~350-400.

- Geometry. At one step (0.39), coarser or codec-aligned cells do not survive low-rate codecs
  better: mp3 32k capacity 17/s for 125 Hz x 32 ms cells, 10 (250 Hz x 64 ms), 8.5 (500 Hz x
  64 ms), 8.4 (Opus/CELT bands x 64 ms), 5.6 (1 kHz x 128 ms); opus 32k 31, 13, 10, 11, 6.
  Errors do shrink with size, but fewer cells carry less. (Opus at 32 kbps codes speech in
  hybrid mode, SILK below 8 kHz, not CELT bands.) What low-rate codecs keep is the energy of
  quiet tiles to ~0.3-0.5 neper, useless at a 0.39 step and reliable at 1.5-4; loud cells are
  kept to ~0.06-0.1 only below 750 Hz. With exact alignment WSOLA tempo leaves cells nearly
  intact (capacity ~400/s at 125 Hz x 32 ms): tempo is an alignment problem, not a geometry one.
- Steps (``--steps``; capacity per second; mark energy relative to one 0.39 step):

      attack        one step 0.39   rising with frequency   by level (shipped)
      mp3 32k            24               111                    219
      opus 32k           38               147                    268
      aac 64k           109               316                    484
      mp3 64k           143               389                    582
      noise 20 dB        67                83                    119
      tempo +3 %        397               552                    683
      mark energy      x1.00        x1.17 (max x1.68)       x0.91 (max x1.18)

  The level is taken against the cell's own block, not the clip's loudest tiles: a clip
  reference gives 20-25 % more capacity, but on 2 s crops it moves by 2.3 dB (std), which
  changes the steps by ~30 % and costs crops more than that. Smoothing the level over
  neighbouring cells lost capacity (mp3 32k 270 -> 195 with a clip reference).

Tried and rejected: a quiet-cell step of 3 instead of 4 (32 kbps codecs 92.9 %: the 3.2 s
clip fails; SNR 32.0 dB); one step per band rising with frequency (half the capacity of steps
by level); the one-step design's weights, which favour loud tiles (with steps rising by band,
32 kbps codecs stayed at 0 % until the weights were flattened: the cells that survive are the
quiet ones); a second coarse
layer (not needed once the steps follow the level); speed hypotheses by resampling on a 0.5 %
grid with two sub-hop phases (same recovery as the band-stretched 1 % grid with tracking, at
2-3x the cost); tempo hypotheses that stretch the frame axis linearly (0 %: WSOLA pieces run at
the original rate, so a linear stretch misaligns them by up to the skip size).
"""

from voxproof.watermark.detect import Detection, Segment, detect
from voxproof.watermark.embed import embed
from voxproof.watermark.keys import WatermarkKey
from voxproof.watermark.payload import RECORD_ID_BITS, TAG_BITS

__all__ = ["RECORD_ID_BITS", "TAG_BITS", "Detection", "Segment", "WatermarkKey", "detect", "embed"]
