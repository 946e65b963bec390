"""The MuJoCo arm task's panel (``aura_mem_dev/arm/bench.py``'s JSON) -> arm.md.

Everything here is read from the panel JSON and the model directory's training records
(``train_report.json``: the memory layers; ``config.json``'s ``meta``: the backbone), so
``python -m aura_mem_dev.arm.bench --render-only`` rewrites the report without re-running.
Issue 15's targets are checked at the end, against the figures above them.
"""

from __future__ import annotations

import numpy as np

from aura_mem_dev.report import NOTES, table, targets

CHANCE = 1 / 3  # three pads, drawn uniformly
CHANCE_P = 0.05  # the memoryless arm's hits differ from a cue-blind arm's below this p
POINTS = 0.05  # aura within 5 points of always-write AURA; never-reset within 5 of reset
MARGIN = 0.30  # aura at least 30 points above memoryless
WRITE_RATIO = 7.0  # at least 7x fewer writes than always-write
COMPLETE = 0.90  # the memoryless arm completes the manipulation
TRAIN_BUDGET_S = 3600.0


def wrote_at_cue(e: dict) -> bool:
    return any(c in e["cue_chunks"] for c in e["write_chunks"])


def cue_split(eps: list[dict]) -> tuple[int, int, int, int]:
    """(successes, episodes) among episodes that wrote at a cue chunk, then among the rest."""
    hit = [e for e in eps if wrote_at_cue(e)]
    miss = [e for e in eps if not wrote_at_cue(e)]
    return (
        sum(e["success"] for e in hit),
        len(hit),
        sum(e["success"] for e in miss),
        len(miss),
    )


def cue_counts(panel: dict) -> list[int]:
    """How often each pad was the cue in this panel's episodes (the same seeds for every arm)."""
    eps = next(iter(panel["per_episode"].values()))
    return [sum(e["cue_pad"] == pad for e in eps) for pad in range(3)]


def cue_blind_chance(eps: list[dict], draws: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """What a policy that cannot see the cue would score with these episodes' pad choices, and
    whether this arm's hits differ from it. -> (expected success, two-sided p).

    The chance of a cue-blind arm is not 1/3 but sum_p P(placed p) P(cue p): an arm that
    prefers one pad scores that pad's share of the cues, which sixty seeds do not draw evenly.
    Pairing the cues with the placements at random (a permutation test; Monte Carlo, seeded)
    gives that expectation and how unusual the observed hits are under it."""
    cues = np.array([e["cue_pad"] for e in eps])
    placed = np.array([-1 if e["placed_pad"] is None else e["placed_pad"] for e in eps])
    hits = int((cues == placed).sum())
    rng = np.random.default_rng(seed)
    null = np.array([(rng.permutation(cues) == placed).sum() for _ in range(draws)])
    expected = float(null.mean()) / len(eps)
    tail = min((null <= hits).mean(), (null >= hits).mean())
    return expected, float(min(1.0, 2 * tail))


def training_seconds(train: dict | None, backbone_meta: dict | None) -> tuple[float | None, str]:
    """Total wall time and how it was made up (the backbone and the threshold calibration may
    come from separate runs; train.py now runs all three in one)."""
    if not train:
        return None, "no train_report.json beside the weights"
    if "backbone_seconds" in train and train.get("never_reset"):
        return float(train["total_seconds"]), one_run_breakdown(train)
    memory = float(train["total_seconds"])
    refit = (train.get("counterfactual_gate") or {}).get("seconds")
    gate = "" if refit is None else f", of which the counterfactual gate refit {refit:.0f} s"
    parts = [f"the memory layers ({memory:.0f} s{gate}, `train_report.json`)"]
    total = memory
    calibration = train.get("threshold_calibration") or {}
    if calibration.get("after_training") and "seconds" in calibration:
        total += float(calibration["seconds"])
        parts.append(
            f"the threshold calibration ({calibration['seconds']:.0f} s, "
            "`python -m aura_mem_dev.arm.calibrate` afterwards)"
        )
    if "backbone_seconds" not in train:
        if not (backbone_meta and "seconds" in backbone_meta):
            return None, "the backbone's time was not recorded; " + ", ".join(parts)
        backbone = float(backbone_meta["seconds"])
        total += backbone
        parts.insert(0, f"the backbone (BC + DAgger, {backbone:.0f} s, `config.json` meta)")
    runs = "one run" if len(parts) == 1 else f"{len(parts)} runs"
    return total, f"{runs}: " + "; ".join(parts)


def one_run_breakdown(train: dict) -> str:
    """How one ``make train-arm`` run's wall time was spent (steps as in arm/train.py)."""
    never = train["never_reset"]
    refit = train["counterfactual_gate"]["seconds"]
    per_episode = train["aura_seconds"] + refit + train["kv_seconds"]
    trained = never["seconds"] - never["data_seconds"] - never["waited_seconds"]
    return (
        "one run of `make train-arm` (`train_report.json`): the backbone (BC + DAgger) "
        f"{train['backbone_seconds']:.0f} s; the per-episode AURA layer "
        f"{train['aura_seconds']:.0f} s, its counterfactual gate refit {refit:.0f} s and the "
        f"KV arm {train['kv_seconds']:.0f} s ({per_episode:.0f} s in all); the never-reset "
        f"layer {never['seconds']:.0f} s in a second process started after the backbone: its "
        f"own episodes {never['data_seconds']:.0f} s, waiting {never['waited_seconds']:.0f} s "
        f"for the refitted layer, then {trained:.0f} s of training, the first process "
        "training the KV arm meanwhile and then waiting for it (`never_reset_train_report.json`)"
    )


def threshold_note(panel: dict, train: dict | None) -> list[str]:
    """Which threshold the learned gate ran at, and where it came from."""
    if "aura_threshold" not in panel:
        return []
    cal = (train or {}).get("threshold_calibration")
    text = f"The learned gate writes when its probability exceeds {panel['aura_threshold']:.3f}"
    if cal and abs(cal["threshold"] - panel["aura_threshold"]) < 1e-6:
        text += (
            f", set in closed loop to {cal['target_writes_per_chunk']} writes per memory step "
            f"on {cal['episodes']} validation episodes (seeds {cal['seed_offset']}..; write "
            "counts only; `aura_mem_dev/arm/calibrate.py`)"
        )
    return ["", text + "."]


def render_markdown(
    panel: dict,
    train: dict | None,
    backbone_meta: dict | None,
    never_reset_train: dict | None = None,
) -> str:
    n = panel["episodes"]
    arms = panel["arms"]
    never = panel.get("never_reset")
    rates = panel["rates"]
    done_steps = [
        e["steps"] for eps in panel["per_episode"].values() for e in eps if e["completed"]
    ]
    span = (
        f"completed episodes here: {min(done_steps)}-{max(done_steps)} control steps at 50 Hz"
        if done_steps
        else "no episode here completed it"
    )
    lines = [
        "# Arm task (MuJoCo): closed-loop panel",
        "",
        "Generated by `make bench-arm` (`python -m aura_mem_dev.arm.bench`; `--render-only` "
        "rewrites this page from arm.json); do not edit.",
        "",
        f"Task `{panel['env']}`: a cue pad lights green for the first 16 control steps, then "
        f"a pick-and-place ({span}, cut at {panel['max_steps']}) must end on that pad; two red "
        "distractor flickers later. Third-person camera "
        f"{panel['image_size']}x{panel['image_size']}, 8-D proprio, 7-D end-effector deltas "
        f"served as 8 x 7 chunks, {panel['execute_steps']} actions executed open loop per "
        "chunk. One memory step = one chunk request. "
        f"{n} episodes per arm, seeds {panel['seed_offset']}..{panel['seed_offset'] + n - 1} "
        "(held out); Wilson 95% intervals. A cue-blind arm hits the cued pad with chance "
        f"{CHANCE:.3f} when cues are drawn evenly; these seeds' cues fall "
        f"{'/'.join(str(c) for c in cue_counts(panel))} on pads 0/1/2, so an arm that "
        "prefers a pad scores that pad's share (the targets below test the memoryless arm "
        "against its own cue-blind chance). "
        "`random`/`periodic` run the trained AURA layer at `aura`'s measured writes per "
        "memory step.",
        *(
            [
                "Re-run with `--update` after their weights changed (the other rows are "
                "the full run's, same seeds): " + ", ".join(panel["updated_arms"]) + "."
            ]
            if panel.get("updated_arms")
            else []
        ),
        *threshold_note(panel, train),
        "",
        *table(
            (
                "arm",
                "success (cued pad)",
                "95% CI",
                "completed (any pad)",
                "writes / episode",
                "memory steps / episode",
                "writes / memory step",
                "episodes writing at a cue frame",
            ),
            (
                (
                    arm,
                    f"{r['success']:.3f} ({r['successes']}/{n})",
                    f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]",
                    f"{r['completed']:.3f}",
                    f"{r['writes_per_episode']:.2f}",
                    f"{r['chunks_per_episode']:.1f}",
                    f"{r['writes_per_step']:.3f}",
                    f"{r['cue_write_fraction']:.2f}",
                )
                for arm, r in arms.items()
            ),
            "lrlrrrrr",
        ),
    ]
    if {"always_kv", "memoryless"} <= set(arms):
        kv, m = arms["always_kv"], arms["memoryless"]
        if kv["completed"] < m["completed"] - 0.2:
            lines += [
                "",
                f"always_kv completes the manipulation in {kv['completed']:.3f} of episodes, the "
                f"frozen backbone alone in {m['completed']:.3f}: this KV arm breaks the base "
                "policy, so its success rate says little about a KV memory on this task.",
            ]
    gated = [a for a in ("aura", "random") if a in panel["per_episode"]]
    if gated:
        lines += ["", "Success by whether the arm wrote while the cue was lit (chunks 0-1):", ""]
        for arm in gated:
            hit_s, hit_n, miss_s, miss_n = cue_split(panel["per_episode"][arm])
            lines.append(
                f"- {arm}: wrote at a cue frame in {hit_n}/{n} episodes, {hit_s} of them "
                f"succeeded; did not in {miss_n}, {miss_s} succeeded."
            )
    if never is not None:
        r = never["result"]
        lo, hi = r["ci95"]
        lines += [
            "",
            f"## Never reset: {never['episodes']} back-to-back episodes, one memory",
            "",
            f"aura arm (layer `{never.get('layer', 'aura')}`), memory cleared once before the "
            f"first episode and never again (seeds "
            f"{never['seed_offset']}..): success {r['success']:.3f} ({r['successes']}/"
            f"{never['episodes']}), 95% CI [{lo:.3f}, {hi:.3f}]; completed {r['completed']:.3f}; "
            f"{r['writes_per_episode']:.2f} writes per episode over {r['memory_steps']} memory "
            f"steps; state {r['state_bytes']} bytes throughout.",
        ]
    total, how = training_seconds(train, backbone_meta)
    lines += [
        "",
        f"## Simulation and rendering cost (this machine, shared, 1 thread; see {NOTES})",
        "",
        f"- physics: {rates['control_steps_per_s']} control steps/s "
        f"({rates['physics_steps_per_s']} MuJoCo steps/s of 2 ms, contacts included), "
        f"scripted expert {rates['expert_ms_per_action']} ms per action",
        "- camera (EGL, software GL, one frame per chunk request; sizes timed in this order, "
        "on a shared machine): "
        + ", ".join(f"{k}x{k}: {v} frames/s" for k, v in rates["render_frames_per_s"].items()),
        f"- arm_mini backbone: {rates['backbone_ms']} ms per chunk request (64x64, 1 thread)",
        "",
        "Training wall time: "
        + (f"{total:.0f} s ({total / 60:.1f} min), " if total is not None else "")
        + f"{how}.",
    ]
    never_s = float(never_reset_train["seconds"]) if never_reset_train else None
    if (train or {}).get("never_reset"):
        never_s = None  # inside make train-arm's wall time
    if never_s is not None:
        lines.append(
            f"The never-reset layer (`make train-arm-never-reset`, a separate run on the "
            f"trained backbone and per-episode layer, `never_reset_train_report.json`): "
            f"{never_s:.0f} s ({never_s / 60:.1f} min)."
        )
    rows = target_rows(panel, total, never_s)
    lines += ["", "## Issue 15's targets", "", *targets(rows)]
    return "\n".join(lines) + "\n"


def target_rows(
    panel: dict, train_total: float | None, never_reset_train_s: float | None = None
) -> list[tuple[str, str, bool]]:
    arms = panel["arms"]
    rows: list[tuple[str, str, bool]] = []
    if "memoryless" in arms:
        m = arms["memoryless"]
        lo, hi = m["ci95"]
        rows.append(
            (
                f"memoryless completes >= {COMPLETE:.0%}",
                f"{m['completed']:.3f}",
                m["completed"] >= COMPLETE,
            )
        )
        expected, p = cue_blind_chance(panel["per_episode"]["memoryless"])
        rows.append(
            (
                "memoryless hits the cued pad at chance: no better or worse than a cue-blind "
                f"arm with its pad choices (permutation test, p >= {CHANCE_P})",
                f"{m['success']:.3f} [{lo:.3f}, {hi:.3f}] vs {expected:.3f}, p = {p:.3f}",
                p >= CHANCE_P,
            )
        )
    if {"aura", "always_aura"} <= set(arms):
        a, w = arms["aura"], arms["always_aura"]
        rows.append(
            (
                "aura >= always-write AURA - 5 points",
                f"{a['success']:.3f} vs {w['success']:.3f}",
                a["success"] >= w["success"] - POINTS,
            )
        )
        ratio = w["writes_per_episode"] / max(a["writes_per_episode"], 1e-9)
        rows.append(
            (
                f">= {WRITE_RATIO:.0f}x fewer writes than always-write AURA",
                f"{ratio:.1f}x",
                ratio >= WRITE_RATIO,
            )
        )
    if {"aura", "memoryless"} <= set(arms):
        a, m = arms["aura"], arms["memoryless"]
        rows.append(
            (
                "aura >= memoryless + 30 points",
                f"{a['success']:.3f} vs {m['success']:.3f}",
                a["success"] >= m["success"] + MARGIN,
            )
        )
    never = panel.get("never_reset")
    if never is not None and "aura" in arms:
        r, a = never["result"], arms["aura"]
        rows.append(
            (
                "never-reset within 5 points of reset (aura)",
                f"{r['success']:.3f} vs {a['success']:.3f}",
                abs(r["success"] - a["success"]) <= POINTS,
            )
        )
    if train_total is not None and never_reset_train_s is None:
        rows.append(
            (
                "`make train-arm` (every shipped arm weight, from scratch) <= 60 min on this "
                "2-core machine",
                f"{train_total / 60:.1f} min",
                train_total <= TRAIN_BUDGET_S,
            )
        )
    elif train_total is not None:  # every shipped arm weight, the never-reset layer too
        both = train_total + never_reset_train_s
        rows.append(
            (
                "every shipped arm weight rebuilt from scratch <= 60 min on this 2-core machine",
                f"{both / 60:.1f} min (`make train-arm` {train_total / 60:.1f} + "
                f"`make train-arm-never-reset` {never_reset_train_s / 60:.1f})",
                both <= TRAIN_BUDGET_S,
            )
        )
    return rows
