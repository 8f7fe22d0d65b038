"""Measure how attacks disturb tile log energies, for candidate mark geometries.

For each corpus clip and attack, the attacked clip is aligned to the original exactly (codecs:
the delay found by cross-correlation; tempo: a clock, sin and cos of the sample index carried
on two tiny extra channels through ffmpeg's atempo, which takes its WSOLA decisions from the
loudest channel, gives the input position of every output sample). Then, on the 8 kHz internal signal, for each geometry (band
edges x slot length x cell kind) the tile log energies of the attacked clip are compared with the
original's over the same input time ranges ("oracle alignment": what a detector that follows
the alignment perfectly would see). A cell is the difference of two tiles: adjacent slots of one
band ("time") or adjacent bands of one slot ("freq").

Printed per attack and geometry: cells per second of speech, the RMS and median |error| of cell
values (neper), and the capacity ``sum 2 rho^2`` per second, rho being the mean of
cos(2 pi error / step) in bins of (band, loudness) with ideal weighting: the squared z a
correlation over one second of cells would reach with a perfectly embedded mark.

With ``--steps``, the geometry is the mark's (125 Hz x 32 ms time cells) and quantiser *step
rules* are compared instead: one step for all cells (0.39 neper, the first design), steps rising
with frequency, and the shipped rule (``analysis.cell_steps``: the step grows with how far a
cell lies below its block), the detector computing the step from the attacked audio as it
must. Printed per attack and rule: the capacity as above, and the mark energy relative to the
uniform rule (cells cost energy ~ tile energy x step^2; uniform 0.39 gives SNR ~31 dB).

Usage:
    PYTHONPATH=functions python scripts/measure_watermark_cells.py [--clips N] [--attacks a,b]
        [--steps]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_watermark as bench
from voxproof.watermark import analysis as an

FINE_HOP = 8  # 1 ms frames at 8 kHz
CLOCK = 8192  # samples per turn of the position clock
CLOCK_LEVEL = 1e-6
BANDS = {
    "b125": np.arange(125, 3626, 125),
    "b250": np.arange(125, 3626, 250),
    "b500": np.arange(125, 3626, 500),
    "b1000": np.array([125, 1125, 2125, 3125]),
    "celt": np.array([200, 400, 600, 800, 1000, 1200, 1400, 1600, 2000, 2400, 2800, 3200, 3800]),
    "bark": np.array([100, 200, 300, 400, 510, 630, 770, 920, 1080, 1270, 1480, 1720, 2000, 2320,
                      2700, 3150, 3700]),
    "bark2": np.array([100, 300, 510, 770, 1080, 1480, 2000, 2700, 3700]),
}
SLOTS_MS = (16, 32, 48, 64, 96, 128)
STEPS = (0.39, 0.28)


def tempo_with_map(x: np.ndarray, sr: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """atempo on [x, a sin(phi), a cos(phi)] with phi = 2 pi n / CLOCK; returns (output, input
    position of each output sample): the clock's phase survives the overlap-add's gain ripple."""
    phi = 2 * np.pi * np.arange(len(x)) / CLOCK
    clock = np.stack([x, CLOCK_LEVEL * np.sin(phi), CLOCK_LEVEL * np.cos(phi)], 1)
    with tempfile.TemporaryDirectory() as d:
        sf.write(f"{d}/in.wav", clock.astype(np.float32), sr, subtype="FLOAT")
        subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", f"{d}/in.wav",
                        "-af", f"atempo={rate}", "-c:a", "pcm_f32le", f"{d}/out.wav"], check=True)
        y, _ = sf.read(f"{d}/out.wav", dtype="float64")
    pos = np.unwrap(np.arctan2(y[:, 1], y[:, 2])) * CLOCK / (2 * np.pi)
    return y[:, 0].astype(np.float32), pos


def delay_of(x8: np.ndarray, y8: np.ndarray) -> float:
    """Delay of y8 behind x8 in samples (cross-correlation peak, parabolic refinement)."""
    n = 1 << int(np.ceil(np.log2(len(x8) + len(y8))))
    c = np.fft.irfft(np.fft.rfft(y8, n) * np.conj(np.fft.rfft(x8, n)), n)
    c = np.concatenate([c[-2000:], c[:2000]])
    k = int(np.argmax(c))
    a, b, cc = c[k - 1], c[k], c[k + 1]
    frac = 0.5 * (a - cc) / (a - 2 * b + cc) if (a - 2 * b + cc) != 0 else 0.0
    return k - 2000 + frac


def fine_frames(x8: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Power spectra (len(centres), 129) of 256-point Hann frames centred at integer samples."""
    pad = np.pad(x8, (an.FRAME, an.FRAME))
    c = np.clip(np.round(centres).astype(np.int64), -an.FRAME // 2, len(x8) + an.FRAME // 2)
    idx = (c + an.FRAME // 2)[:, None] + np.arange(an.FRAME)[None, :]
    spec = np.fft.rfft(pad[idx] * np.hanning(an.FRAME + 1)[:-1], axis=1)
    return spec.real**2 + spec.imag**2


def band_sum(p: np.ndarray, edges_hz: np.ndarray) -> np.ndarray:
    bins = edges_hz / (an.RATE / an.FRAME)  # bin k covers [k - 0.5, k + 0.5)
    run = np.concatenate([np.zeros((len(p), 1)), np.cumsum(p, axis=1)], axis=1)
    pos = bins + 0.5
    lo = np.floor(pos).astype(int)
    f = pos - lo
    at = run[:, lo] * (1 - f) + run[:, np.minimum(lo + 1, run.shape[1] - 1)] * f
    return np.diff(at, axis=1)


def slot_mean(e: np.ndarray, where: np.ndarray, slot: int, n_slots: int) -> np.ndarray:
    """Mean of rows of e by slot index where // slot (rows outside are dropped)."""
    k = np.floor(where / slot).astype(np.int64)
    ok = (k >= 0) & (k < n_slots)
    s = np.zeros((n_slots, e.shape[1]))
    c = np.zeros(n_slots)
    np.add.at(s, k[ok], e[ok])
    np.add.at(c, k[ok], 1.0)
    return np.log(s / np.maximum(c, 1)[:, None] + 1e-12), c


def measure_clip(x8: np.ndarray, y8: np.ndarray, pos8: np.ndarray) -> dict:
    """Cell errors for every geometry: {(bands, slot_ms, kind): (errors, band, loud_db, secs)}."""
    cin = np.arange(0, len(x8), FINE_HOP) + FINE_HOP / 2
    cout = np.arange(0, len(y8), FINE_HOP) + FINE_HOP / 2
    pin = fine_frames(x8, cin)
    pout = fine_frames(y8, cout)
    where_out = np.interp(cout, np.arange(len(pos8)), pos8)
    out = {}
    for name, edges in BANDS.items():
        ein, eout = band_sum(pin, edges), band_sum(pout, edges)
        for ms in SLOTS_MS:
            slot = ms * an.RATE // 1000
            n_slots = len(x8) // slot
            lin, _ = slot_mean(ein, cin, slot, n_slots)
            lout, cnt = slot_mean(eout, where_out, slot, n_slots)
            level = np.log(np.exp(lin).sum(axis=1))
            active = (level >= np.percentile(level, 99) - 40 * np.log(10) / 10) & (cnt > 0)
            top = np.percentile(lin[active], 99)
            for kind in ("time", "freq"):
                if kind == "time":
                    m = n_slots // 2
                    a, b = slice(0, 2 * m, 2), slice(1, 2 * m, 2)
                    vin = lin[a] - lin[b]
                    vout = lout[a] - lout[b]
                    act = (active[a] & active[b])[:, None] & np.ones(lin.shape[1], bool)
                    weak = np.minimum(lin[a], lin[b])
                    band = np.broadcast_to(np.arange(lin.shape[1]), vin.shape)
                else:
                    m = lin.shape[1] // 2
                    vin = lin[:, 0 : 2 * m : 2] - lin[:, 1 : 2 * m : 2]
                    vout = lout[:, 0 : 2 * m : 2] - lout[:, 1 : 2 * m : 2]
                    act = active[:, None] & np.ones(m, bool)
                    weak = np.minimum(lin[:, 0 : 2 * m : 2], lin[:, 1 : 2 * m : 2])
                    band = np.broadcast_to(np.arange(m), vin.shape)
                loud = (top - weak) * 10 / np.log(10)
                out[(name, ms, kind)] = (
                    (vout - vin)[act], band[act], loud[act], active.sum() * ms / 1000)
    return out


def attacked(name: str, x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(attacked 8 kHz signal, input position at 8 kHz of each of its samples)."""
    x8 = an.to_internal(x, sr)
    if name.startswith("tempo"):
        rate = 1.03 if "+" in name else 0.97
        y, pos = tempo_with_map(x, sr, rate)
        y8 = an.to_internal(y, sr)
        pos8 = np.interp(np.arange(len(y8)) * sr / an.RATE, np.arange(len(pos)), pos) * an.RATE / sr
        return y8, pos8
    y = bench.ATTACKS[name](x, sr, 0)
    y8 = an.to_internal(y, sr)
    d = delay_of(x8, y8)
    return y8, np.arange(len(y8)) - d


def capacity(err: np.ndarray, band: np.ndarray, loud: np.ndarray, step: float) -> float:
    """Capacity of one step for all cells, binned by band and 5 dB of loudness."""
    lb = np.minimum(np.floor(np.maximum(loud, 0) / 5), 12).astype(int)
    return ideal_capacity(np.cos(2 * np.pi * err / step), band, lb)


# --- step rules ---------------------------------------------------------------------------------
def _rising(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Steps rising with frequency: 0.2 up to 1 kHz, geometric to 3 at 2.5 kHz and above."""
    f = 125 * np.arange(first.shape[-1]) + 187.5
    log_s = np.interp(f, [1000, 2500], [np.log(0.2), np.log(3.0)])
    return np.broadcast_to(np.exp(log_s), first.shape)


STEP_RULES = {
    "uniform 0.39": lambda a, b: np.full(a.shape, 0.39),
    "rising with frequency": _rising,
    "by level (shipped)": an.cell_steps,
}


def step_rule_cells(x8: np.ndarray, y8: np.ndarray, pos8: np.ndarray) -> dict:
    """Per rule: (cos of the lattice phase error, band, level bin, cost, seconds) of the active
    time cells of the mark's geometry."""
    edges = BANDS["b125"]
    slot = 32 * an.RATE // 1000
    n_slots = len(x8) // slot
    cin = np.arange(0, len(x8), FINE_HOP) + FINE_HOP / 2
    cout = np.arange(0, len(y8), FINE_HOP) + FINE_HOP / 2
    lin, _ = slot_mean(band_sum(fine_frames(x8, cin), edges), cin, slot, n_slots)
    where = np.interp(cout, np.arange(len(pos8)), pos8)
    lout, cnt = slot_mean(band_sum(fine_frames(y8, cout), edges), where, slot, n_slots)
    level = np.log(np.exp(lin).sum(axis=1))
    active = (level >= np.percentile(level, 99) - 40 * np.log(10) / 10) & (cnt > 0)
    m = n_slots // 2
    a, b = slice(0, 2 * m, 2), slice(1, 2 * m, 2)
    act = (active[a] & active[b])[:, None] & np.ones(lin.shape[1], bool)
    band = np.broadcast_to(np.arange(lin.shape[1]), act.shape)
    lev = np.clip(np.floor(an.cell_levels(lout[a], lout[b]) / 5), 0, 9).astype(int)
    cost = (np.exp(lin[a]) + np.exp(lin[b])) / np.exp(lin).sum()
    out = {}
    for name, rule in STEP_RULES.items():
        s_in, s_out = rule(lin[a], lin[b]), rule(lout[a], lout[b])
        phase = 2 * np.pi * ((lout[a] - lout[b]) / s_out - (lin[a] - lin[b]) / s_in)
        out[name] = (np.cos(phase)[act], band[act], lev[act], (cost * s_in**2)[act].sum(),
                     (cost * 0.39**2)[act].sum(), act[:, 0].sum() * 2 * slot / an.RATE)
    return out


def ideal_capacity(c: np.ndarray, band: np.ndarray, lev: np.ndarray) -> float:
    """sum over (band, level) bins of n * 2 * max(rho^2 - 1/(2n), 0), rho = mean cos."""
    key = band * 16 + lev
    total = 0.0
    for k in np.unique(key):
        sel = key == k
        n = int(sel.sum())
        rho = float(c[sel].mean())
        if rho > 0:
            total += n * 2 * max(rho * rho - 1 / (2 * n), 0.0)
    return total


def main_steps(clips: list, attacks: list[str]) -> None:
    print(f"{'attack':<12}" + "".join(f"{name:>24}" for name in STEP_RULES))
    energy: dict[str, list[float]] = {name: [] for name in STEP_RULES}
    for att in attacks:
        acc: dict[str, list] = {name: [] for name in STEP_RULES}
        for x, sr in clips:
            y8, pos8 = attacked(att, x, sr)
            for name, v in step_rule_cells(an.to_internal(x, sr), y8, pos8).items():
                acc[name].append(v)
        row = []
        for name, parts in acc.items():
            cap = sum(ideal_capacity(c, b, lv) for c, b, lv, *_ in parts)
            row.append(cap / sum(q[5] for q in parts))
            energy[name] = [q[3] / q[4] for q in parts]
        print(f"{att:<12}" + "".join(f"{v:>24.1f}" for v in row))
    print(f"{'energy':<12}" + "".join(
        f"{f'x{np.mean(e):.2f} (max x{np.max(e):.2f})':>24}" for e in energy.values()))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=0)
    p.add_argument("--attacks", default="mp3_64k,mp3_32k,aac_64k,opus_32k,tempo_+3%,tempo_-3%")
    p.add_argument("--geoms", default="")
    p.add_argument("--steps", action="store_true", help="compare step rules (mark geometry)")
    args = p.parse_args()
    files = sorted(bench.spoken_corpus("piper", bench.piper_speaker).glob("*.wav"))[: args.clips or None]
    clips = [sf.read(f, dtype="float32") for f in files]
    if args.steps:
        main_steps(clips, args.attacks.split(","))
        return 0
    for att in args.attacks.split(","):
        acc: dict = {}
        for x, sr in clips:
            y8, pos8 = attacked(att, x, sr)
            for k, v in measure_clip(an.to_internal(x, sr), y8, pos8).items():
                acc.setdefault(k, []).append(v)
        print(f"== {att}")
        print(f"{'geometry':<22}{'cells/s':>8}{'rms':>7}{'med':>7}"
              + "".join(f"{'C/s@' + str(s):>10}" for s in STEPS))
        for k, parts in acc.items():
            if args.geoms and k[0] not in args.geoms.split(","):
                continue
            secs = sum(q[3] for q in parts)
            err = np.concatenate([q[0] for q in parts])
            band = np.concatenate([q[1] for q in parts])
            loud = np.concatenate([q[2] for q in parts])
            w = np.exp(-np.maximum(loud, 0) / 10)  # detector-like weighting for the error stats
            rms = float(np.sqrt(np.sum(w * err**2) / np.sum(w)))
            med = float(np.median(np.abs(err[loud < 20]))) if np.any(loud < 20) else float("nan")
            caps = [capacity(err, band, loud, s) / secs for s in STEPS]
            label = f"{k[0]} {k[1]}ms {k[2]}"
            print(f"{label:<22}{len(err) / secs:>8.0f}{rms:>7.3f}{med:>7.3f}"
                  + "".join(f"{c:>10.1f}" for c in caps))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
