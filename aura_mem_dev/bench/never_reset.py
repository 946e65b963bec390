"""``make bench-never-reset``: the never-reset panels (matched reset / never-reset) and the soak.

Per stream (S13, S11, and ``mixed`` = S11/S13/S17Random alternating): the closed-loop panel
of ``aura-mem-bench closed-loop`` twice on the same seeds, once resetting memory before every
episode and once never resetting it; then one ``never-reset-soak`` run. Everything goes to
one JSON (``NeverResetRun``), rewritten after each panel and each soak window so that a long
run can be resumed (``--resume`` keeps every finished panel of the same settings and continues
the soak from its last window); ``aura_mem_dev/report/never_reset.py`` renders it.

Any AURA layer can be measured: ``--model-dir`` (frozen backbone + its layers) and
``--aura-checkpoint`` / ``--kv-checkpoint`` (layers stored elsewhere).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aura_mem_dev.bench.closed_loop import ARMS, Models, Panel, run_panel
from aura_mem_dev.bench.never_reset_soak import SOAK_SEED_OFFSET, SoakResult, run_soak
from aura_mem_dev.training.seeds import EVAL_SEED_BASE

STREAMS = ("MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS11-v0", "mixed")
MODES = ("reset", "never")


@dataclass
class NeverResetRun:
    command: str
    date: str
    model: str
    episodes: int  # per arm and panel
    seed_offset: int
    panels: dict[str, dict[str, Panel]] = field(default_factory=dict)  # stream -> mode -> panel
    soak: SoakResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "panels": {
                s: {m: p.to_dict() for m, p in modes.items()} for s, modes in self.panels.items()
            },
            "soak": None if self.soak is None else self.soak.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NeverResetRun:
        panels = {
            s: {m: Panel.from_dict(p) for m, p in modes.items()}
            for s, modes in data["panels"].items()
        }
        soak = None if data.get("soak") is None else SoakResult.from_dict(data["soak"])
        return cls(**{**data, "panels": panels, "soak": soak})


def run_all(
    out: Path,
    *,
    episodes: int = 500,
    soak_steps: int = 100_000,
    soak_window: int = 10_000,
    streams: tuple[str, ...] = STREAMS,
    seed_offset: int = EVAL_SEED_BASE,
    model_dir: str | None = None,
    aura_checkpoint: str | None = None,
    kv_checkpoint: str | None = None,
    soak_max_seconds: float | None = None,
    resume: bool = False,
    command: str = "",
) -> NeverResetRun:
    """Run what is missing, saving ``out`` (JSON) after every panel and soak window."""
    models = Models.resolve(model_dir, aura_checkpoint, kv_checkpoint)
    run = NeverResetRun(
        command=command,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        model=models.describe(),
        episodes=episodes,
        seed_offset=seed_offset,
    )
    if resume and out.is_file():
        previous = NeverResetRun.from_dict(json.loads(out.read_text()))
        if (previous.model, previous.episodes, previous.seed_offset) == (
            run.model,
            episodes,
            seed_offset,
        ):
            run.panels, run.soak = previous.panels, previous.soak
        else:
            print("--resume: the saved run has other settings; starting over", file=sys.stderr)
    for stream in streams:
        for mode in MODES:
            if mode in run.panels.get(stream, {}):
                continue
            t0 = time.time()
            panel = run_panel(
                stream,
                episodes,
                seed_offset,
                arms=ARMS,
                model_dir=model_dir,
                reset=mode == "reset",
                aura_checkpoint=aura_checkpoint,
                kv_checkpoint=kv_checkpoint,
            )
            panel.seconds = round(time.time() - t0, 1)
            panel.per_episode = {}  # 500 episodes x 6 arms x 6 panels: summaries only here
            run.panels.setdefault(stream, {})[mode] = panel
            _save(run, out)
            aura = panel.arms["aura"]
            print(
                f"{stream} {mode}: aura {aura.success:.3f}, {aura.writes_per_episode:.2f} "
                f"writes/episode ({panel.seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    if soak_steps > 0 and (run.soak is None or not run.soak.complete):

        def saved(result: SoakResult) -> None:
            run.soak = result
            _save(run, out)

        run.soak = run_soak(
            soak_steps,
            soak_window,
            seed_offset=SOAK_SEED_OFFSET,
            model_dir=model_dir,
            aura_checkpoint=aura_checkpoint,
            max_seconds=soak_max_seconds,
            resume=run.soak if resume else None,
            command=command,
            on_window=saved,
        )
        _save(run, out)
    return run


def _save(run: NeverResetRun, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run.to_dict(), indent=2) + "\n")
