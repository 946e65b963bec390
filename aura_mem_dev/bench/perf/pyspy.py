"""Where the node's time goes: py-spy samples of the node process, grouped by what the code
does (backbone, memory step, image conversion, publishing, ...)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def py_spy_profile(pid: int, seconds: float, out_dir: Path) -> dict[str, Any] | None:
    """Sample the node process with py-spy (if installed) for ``seconds``; aggregate frames."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    raw = out_dir / "node_pyspy.txt"
    proc = subprocess.run(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if proc.returncode != 0 or not raw.exists():
        return {"error": (proc.stderr or proc.stdout)[-500:]}
    return summarise_raw_profile(raw.read_text())


# Where a node sample belongs: the first group whose marker appears in its stack.
NODE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("backbone: mini CNN (MiniBackbone.step)", ("MiniBackbone.step",)),
    ("AURA memory step (AuraRuntime.select_action)", ("AuraRuntime.select_action",)),
    ("image message -> numpy (message_to_rgb)", ("message_to_rgb",)),
    ("proprio conversion", ("joint_state_to_proprio",)),
    ("publish ~/action", ("_publish_action",)),
    ("persist state file", ("AuraPipeline.persist",)),
    ("~/stats + /diagnostics timers", ("_on_stats_timer", "_on_diagnostics_timer")),
    ("rest of the worker (pipeline bookkeeping, stats)", ("_infer (",)),
    ("executor thread: take, deserialize, dispatch", ("executors.py",)),
)
_GENERIC = (
    "<module>",
    "run (",
    "_bootstrap",
    "main (",
    "thread (",
    "Thread.",
    "_worker (",
    "_WorkItem.run",
    "Module._call_impl",
    "Module._wrapped_call_impl",
    "process ",
)


def summarise_raw_profile(text: str, top: int = 14) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks -> where the busy samples go, by group and by function.

    Idle samples (a thread waiting in the executor, a sleep, a lock) are split off: what is
    left is where the CPU goes.
    """
    import re
    from collections import Counter

    idle_markers = (
        "wait (threading.py",
        "_worker (concurrent/futures/thread.py",
        "_wait_for_ready_callbacks",
        "select (",
        "sleep",
    )
    inclusive: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    busy = idle = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if f]
        leaf = frames[-1] if frames else ""
        if any(m in leaf for m in idle_markers) or leaf.startswith("process "):
            idle += n
            continue
        busy += n
        for f in set(frames):
            inclusive[f] += n
        label = next((g for g, marks in NODE_GROUPS if any(m in stack for m in marks)), "other")
        groups[label] += n
    rows = [
        {"function": f, "share_of_busy": round(n / max(busy, 1), 3)}
        for f, n in inclusive.most_common(80)
        if not f.startswith(_GENERIC)
    ][:top]
    by_group = [
        {"group": g, "share_of_busy": round(groups[g] / max(busy, 1), 3)}
        for g in [*(g for g, _ in NODE_GROUPS), "other"]
        if groups[g]
    ]
    return {"busy_samples": busy, "idle_samples": idle, "by_group": by_group, "top_inclusive": rows}
