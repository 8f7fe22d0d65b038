"""Presenting a ``Detection``: a readable report and a timeline picture of the window scores."""

from __future__ import annotations

from pathlib import Path

from voxproof.watermark.detect import MARKED_Z, Detection, Presence
from voxproof.watermark.payload import format_record_id


def report_text(found: Detection, name: str, duration_s: float, sample_rate: int) -> str:
    """A few lines for people: verdict, record, key, confidence, marked ranges."""
    lines = [f"file:    {name} ({duration_s:.2f} s, {sample_rate} Hz)"]
    if not found.found:
        lines += ["mark:    none found for the given key(s)", presence_text(found.presence)]
        return "\n".join(lines)
    assert found.record_id is not None
    speed = "none" if not found.speed else f"{100 * found.speed:+.1f} % ({found.mode})"
    lines += [
        (f"mark:    FOUND, record {format_record_id(found.record_id)}, key {found.key_id}"
         " (authentication tag verified)"),
        (f"score:   {found.score:.1f} (correlation z); false-positive probability "
         f"<= {found.p_false:.1e}"),
        f"speed/tempo change undone: {speed}",
        presence_text(found.presence),
        "ranges:",
    ]
    for seg in found.segments:
        label = "marked  " if seg.marked else "UNMARKED"
        lines.append(f"  {seg.start_s:7.2f} - {seg.end_s:7.2f} s  {label} (score {seg.score:.1f})")
    return "\n".join(lines)


def presence_text(presence: Presence) -> str:
    """One line on the presence tier (a keyed statistic, never a record id)."""
    stat = (f"z {presence.z:.1f}, threshold {presence.threshold:.2f} over "
            f"{presence.hypotheses} hypotheses")
    if not presence.found:
        return f"presence: not found ({stat})"
    return (f"presence: FOUND, key {presence.key_id} ({stat}; false-positive probability "
            f"<= {presence.p_false:.1e})")


def plot_timeline(found: Detection, duration_s: float, path: str | Path) -> None:
    """Per-window scores over time, marked ranges shaded, threshold drawn; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
    for seg in found.segments:
        ax.axvspan(seg.start_s, seg.end_s, color="tab:green" if seg.marked else "tab:red",
                   alpha=0.15, lw=0)
    if found.windows:
        mids = [(a + b) / 2 for a, b, _ in found.windows]
        ax.plot(mids, [z for _, _, z in found.windows], "o-", color="black", ms=3, lw=1)
    ax.axhline(MARKED_Z, color="gray", ls="--", lw=1)
    title = (f"record {format_record_id(found.record_id)} (key {found.key_id})"
             if found.found and found.record_id is not None else "no mark found")
    ax.set(xlim=(0, max(duration_s, 1e-3)), xlabel="time (s)", ylabel="window score (z)",
           title=title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
