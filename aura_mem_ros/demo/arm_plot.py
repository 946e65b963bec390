"""The arm demo's picture: one episode's camera frames, the chunks that wrote memory marked.

Top: the frame of every chunk request (a red border = the gate wrote it into memory; a green
"cue" tag = the cue pad was lit in it; an orange "flicker" tag = a distractor). Bottom: the
same as a timeline over control steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_arm_episode(frames: list[np.ndarray], steps: list[dict], title: str, path: Path) -> Path:
    """frames[i] is the image chunk request ``steps[i]`` answered (same order)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on robots or CI
    import matplotlib.pyplot as plt

    n = len(frames)
    cols = min(n, 12)
    rows = (n + cols - 1) // cols
    fig = plt.figure(figsize=(1.25 * cols, 1.35 * rows + 2.2), dpi=100)
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1.0] * rows + [1.4])
    for i, (frame, info) in enumerate(zip(frames, steps, strict=True)):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.imshow(frame)
        ax.set_xticks([])
        ax.set_yticks([])
        wrote = bool(info["wrote"])
        for spine in ax.spines.values():
            spine.set_edgecolor("red" if wrote else "0.7")
            spine.set_linewidth(3.0 if wrote else 0.5)
        tags = []
        if info.get("cue_visible"):
            tags.append("cue")
        if info.get("flicker_visible"):
            tags.append("flicker")
        label = f"t={info['step']}" + (" WRITE" if wrote else "")
        ax.set_title(label, fontsize=6, color="red" if wrote else "black", pad=2)
        if tags:
            ax.text(
                1,
                1,
                " ".join(tags),
                fontsize=5,
                va="top",
                color="white",
                bbox={"facecolor": "green" if "cue" in tags else "darkorange", "pad": 1},
            )
    ax = fig.add_subplot(grid[rows, :])
    t = [s["step"] for s in steps]
    for x, s in zip(t, steps, strict=True):
        if s.get("cue_visible"):
            ax.axvspan(x, x + 8, color="tab:green", alpha=0.2, lw=0)
        if s.get("flicker_visible"):
            ax.axvspan(x, x + 8, color="tab:orange", alpha=0.2, lw=0)
    writes = [x for x, s in zip(t, steps, strict=True) if s["wrote"]]
    ax.vlines(writes, 0, 1, colors="tab:red", lw=2.5, label=f"memory write ({len(writes)})")
    if all("write_prob" in s for s in steps):
        probs = [s["write_prob"] for s in steps]
        ax.step(t, probs, where="post", color="0.4", lw=1, label="gate write probability")
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlim(0, max(t) + 8 if t else 8)
    ax.set_xlabel("control step (green: cue lit; orange: distractor flicker; one chunk = 8 steps)")
    ax.legend(loc="upper right", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
