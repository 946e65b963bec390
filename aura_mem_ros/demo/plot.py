"""The demo's picture: when the memory wrote during one episode, against the cue."""

from __future__ import annotations

from pathlib import Path


def plot_writes(steps: list[dict], title: str, path: Path) -> Path:
    """steps: per-step dicts with ``step``, ``wrote``, ``cue_visible``, ``action``."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on robots or CI
    import matplotlib.pyplot as plt

    t = [s["step"] for s in steps]
    wrote = [1 if s["wrote"] else 0 for s in steps]
    visible = [s["cue_visible"] for s in steps]
    first = next((s["step"] for s in steps if s["cue_visible"]), None)
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=110)
    for x, v in zip(t, visible, strict=True):
        if v:
            ax.axvspan(x - 0.5, x + 0.5, color="tab:green", alpha=0.15, lw=0)
    ax.vlines(t, 0, wrote, colors="tab:red", lw=3, label="memory write")
    ax.plot([x for x, w in zip(t, wrote, strict=True) if w], [1] * sum(wrote), "o", color="tab:red")
    if first is not None:
        ax.axvline(first, color="tab:green", ls="--", label=f"cue first seen (step {first})")
    names = {0: "L", 1: "R", 2: "F"}
    for x, s in zip(t, steps, strict=True):
        ax.text(x, -0.25, names.get(s["action"], str(s["action"])), ha="center", fontsize=7)
    ax.set_ylim(-0.4, 1.3)
    ax.set_yticks([0, 1], ["silent", "write"])
    ax.set_xlabel("control step (green band: cue in view; letters: action taken)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
