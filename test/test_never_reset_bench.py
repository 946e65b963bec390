"""The never-reset soak (windows, no resets, exact resume) and its report, at a tiny size."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aura_mem_dev.bench.never_reset import NeverResetRun, run_all
from aura_mem_dev.bench.never_reset_soak import SOAK_SEED_OFFSET, SoakResult, run_soak
from aura_mem_dev.report.never_reset import render_markdown

torch.set_num_threads(1)


def _strip_timing(result: SoakResult) -> list[dict]:
    keep = ("end_step", "steps", "episodes", "successes", "writes", "state_bytes")
    return [{k: getattr(w, k) for k in keep} for w in result.windows]


def test_soak_windows_never_reset_and_resume_exactly(monkeypatch) -> None:
    from aura_mem_ros.core.runtime import AuraRuntime

    calls = {"reset": 0}
    original = AuraRuntime.reset

    def counting(self) -> None:
        calls["reset"] += 1
        original(self)

    monkeypatch.setattr(AuraRuntime, "reset", counting)
    whole = run_soak(150, 50, arm="always_aura", progress=False)
    assert calls["reset"] == 1  # only when the runtime was built
    assert whole.complete and whole.resets == 0 and whole.total_steps >= 150
    assert len(whole.windows) == 3
    assert all(w.state_bytes == 4224 and w.rss_mb > 0 for w in whole.windows)
    assert sum(w.steps for w in whole.windows) == whole.total_steps
    assert whole.windows[0].end_step >= 50  # closed at an episode end past the boundary

    saved: list[SoakResult] = []
    part = run_soak(100, 50, arm="always_aura", progress=False, on_window=saved.append)
    assert part.complete and len(saved) == 2
    stored = SoakResult.from_dict(part.to_dict())  # what --resume reads back from the JSON
    resumed = run_soak(150, 50, arm="always_aura", progress=False, resume=stored)
    assert _strip_timing(resumed) == _strip_timing(whole)
    assert resumed.state_b64 == whole.state_b64  # the same memory, bit for bit

    other = dataclasses.replace(stored, seed_offset=SOAK_SEED_OFFSET + 1)
    with pytest.raises(ValueError, match="seed_offset"):
        run_soak(150, 50, arm="always_aura", progress=False, resume=other)


@pytest.mark.slow
def test_never_reset_report_runs_end_to_end(tmp_path) -> None:
    out = tmp_path / "never_reset.json"
    run = run_all(
        out,
        episodes=2,
        soak_steps=40,
        soak_window=20,
        streams=("MiniGrid-MemoryS11-v0",),
        seed_offset=1_000_900,
    )
    assert set(run.panels["MiniGrid-MemoryS11-v0"]) == {"reset", "never"}
    again = NeverResetRun.from_dict(__import__("json").loads(out.read_text()))
    assert again.to_dict() == run.to_dict()
    text = render_markdown(again)
    assert "| aura |" in text and "Reduced size" in text and "## Soak" in text
    # --resume keeps what is finished: nothing is recomputed
    resumed = run_all(
        out,
        episodes=2,
        soak_steps=40,
        soak_window=20,
        streams=("MiniGrid-MemoryS11-v0",),
        seed_offset=1_000_900,
        resume=True,
    )
    assert resumed.to_dict()["panels"] == run.to_dict()["panels"]


def test_the_spawn_frame_comes_back_after_the_cue_was_seen() -> None:
    """The premise of issue 12's analysis (aura-mem-bench spawn-recurrence): the expert's
    look-back returns to the spawn pose, so an observation alone cannot say 'cue already seen'."""
    from aura_mem_dev.bench.spawn_recurrence import count_recurrences

    row = count_recurrences("MiniGrid-MemoryS7-v0", episodes=10, seed_offset=123)
    assert row["spawn_pose_recurs_after_cue"] >= 0.5
    assert row["spawn_frame_recurs_after_cue"] == row["spawn_pose_recurs_after_cue"]


def test_fisher_exact_matches_the_textbook_table() -> None:
    from aura_mem_dev.report.never_reset import fisher_exact_p

    # Fisher's tea-tasting table [[3, 1], [1, 3]]: two-sided p = 34/70
    assert fisher_exact_p(3, 4, 4, 8) == pytest.approx(34 / 70)
    assert fisher_exact_p(2, 4, 4, 8) == pytest.approx(1.0)


def test_soak_is_flat_unless_a_window_differs_from_the_rest_of_the_run() -> None:
    """One failure among ~8,500 successes is flat; a window at half the rate is not."""
    from aura_mem_dev.bench.never_reset_soak import SoakWindow
    from aura_mem_dev.report.never_reset import soak_targets

    def soak(successes: list[int], n: int = 850) -> SoakResult:
        windows = [
            SoakWindow(i, (i + 1) * 10_000, 10_000, n, k, k / n, (0.0, 1.0), 0, 0.0, 4224, 1.0, 1.0)
            for i, k in enumerate(successes)
        ]
        return SoakResult(
            "e", ["e"], "aura", 100_000, 10_000, 0, 100, "m", "c", "d", windows, 100_000
        )

    def flat(result: SoakResult) -> bool:
        return next(met for name, _, met in soak_targets(result) if "flat" in name)

    assert flat(soak([850, 850, 849, *[850] * 7]))
    assert not flat(soak([850] * 9 + [425]))
