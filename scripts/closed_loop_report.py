#!/usr/bin/env python3
"""``make bench-closed-loop``: regenerate docs/results/closed_loop.md (S13 and S11 + AIS).

    python scripts/closed_loop_report.py [--episodes 60] [--seed-offset 1000000]

Runs the in-process closed-loop panel (``aura-mem-bench closed-loop``) on MiniGrid-MemoryS13
and S11, writes their JSON next to the markdown, checks the issue's targets, and instantiates
the AIS value-loss bound on S13. Evaluation seeds are disjoint from all training seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aura_mem_dev.bench.closed_loop import format_table, run_panel  # noqa: E402
from aura_mem_dev.training.seeds import EVAL_SEED_BASE  # noqa: E402

ENVS = ("MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS11-v0")


def targets(panel: dict) -> list[tuple[str, bool, str]]:
    a = panel["arms"]
    aura = a["aura"]
    best_always = max(a["always_kv"]["success"], a["always_aura"]["success"])
    dense = min(a["always_kv"]["writes_per_episode"], a["always_aura"]["writes_per_episode"])
    ratio = dense / max(aura["writes_per_episode"], 1e-9)
    # "Clearly below": aura's Wilson interval lies entirely above the baseline's point value.
    lo = aura["ci95"][0]
    return [
        (
            "aura >= best always-write arm - 5 pts",
            aura["success"] >= best_always - 0.05,
            f"{aura['success']:.3f} vs {best_always:.3f} - 0.05",
        ),
        (
            "aura >= memoryless + 30 pts",
            aura["success"] >= a["memoryless"]["success"] + 0.30,
            f"{aura['success']:.3f} vs {a['memoryless']['success']:.3f} + 0.30",
        ),
        (">= 7x fewer writes than the always-write arms", ratio >= 7.0, f"{ratio:.1f}x"),
        (
            "random clearly below aura",
            a["random"]["success"] < lo,
            f"random {a['random']['success']:.3f} vs aura CI low {lo:.3f}",
        ),
        (
            "periodic clearly below aura",
            a["periodic"]["success"] < lo,
            f"periodic {a['periodic']['success']:.3f} vs aura CI low {lo:.3f}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--seed-offset", type=int, default=EVAL_SEED_BASE)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "closed_loop.md")
    ap.add_argument("--skip-ais", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    lines = [
        "# Closed loop: MiniGrid-Memory, frozen `mini` policy + AURA-Mem",
        "",
        "Regenerate with `make bench-closed-loop` (`python scripts/closed_loop_report.py`).",
        f"{args.episodes} episodes per arm, evaluation seeds {args.seed_offset}.. (training "
        f"seeds are all < {EVAL_SEED_BASE}), episodes cut at 100 steps (the oracle needs "
        "<= 19), in-process loop (same backbone/runtime calls as the ROS node). Success "
        "intervals: Wilson 95%. `random`/`periodic` run the same trained AURA layer at "
        "`aura`'s measured writes/step.",
        "",
        *method_lines(),
    ]
    for env_id in ENVS:
        panel = run_panel(env_id, args.episodes, args.seed_offset)
        short = env_id.replace("MiniGrid-Memory", "").replace("-v0", "")
        json_path = args.out.parent / f"closed_loop_{short}.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(panel, indent=2) + "\n")
        print(f"{env_id}\n{format_table(panel)}\n", flush=True)
        lines += [
            f"## {env_id}",
            "",
            format_table(panel),
            "",
            f"Budget for random/periodic: {panel['budget_writes_per_step']:.4f} "
            f"writes/step. Raw: `{json_path.name}` (next to this file).",
            "",
            "| target (issue 5) | met | measured |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {'yes' if ok else '**no**'} | {m} |" for name, ok, m in targets(panel)
        ]
        lines.append("")
    if not args.skip_ais:
        lines += ais_section(args.seed_offset)
    lines.append(f"_Generated in {time.time() - t0:.0f} s on this machine's CPU._")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


def method_lines() -> list[str]:
    from aura_mem_dev.training.aura_dagger import AuraTrainConfig
    from aura_mem_dev.training.kv_train import KVTrainConfig
    from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR

    acfg, kcfg = AuraTrainConfig(), KVTrainConfig()

    report_path = DEFAULT_MODEL_DIR / "train_report.json"
    timing = ""
    if report_path.is_file():
        r = json.loads(report_path.read_text())
        timing = (
            f" `make train-default` took {r.get('total_seconds', float('nan')):.0f} s here "
            f"(backbone {r.get('backbone_seconds', float('nan')):.0f} s, AURA "
            f"{r.get('aura_seconds', float('nan')):.0f} s, KV arm "
            f"{r.get('kv_seconds', float('nan')):.0f} s)."
        )
    return [
        "How the arms were trained (all on MiniGrid-MemoryS13 + S11, seeds < 1,000,000): the "
        "frozen `mini` policy by behaviour cloning of the full-state BFS oracle + 2 DAgger "
        "rounds, no memory; the AURA layer (d_key = d_val = 32, 4,224-byte state) by closed-"
        "loop DAgger (roll out the gated policy, relabel with the oracle, aggregate, retrain; "
        f"{acfg.rounds} rounds) after a head warm-up on the oracle write schedule, with the "
        "gate fitted to "
        "the exact counterfactual action-error benefit of each write against a Lagrange write "
        f"price (budget {acfg.target_write_rate} writes/step; see "
        "`aura_mem_dev/training/memory_fit.py`); the "
        "`always_kv` arm (softmax attention over one 32-d key + value per step, same residual "
        f"head) with `core.train` on the same aggregated data + {kcfg.rounds} DAgger rounds of "
        "its own. `random`/`periodic` are matched in writes per STEP; because they fail to "
        "store the cue they often wander (look back again) until the 100-step cut, so their "
        "episodes are longer and they write more per episode than `aura`." + timing,
        "",
    ]


def ais_section(seed_offset: int) -> list[str]:
    from aura_mem_dev.training.ais_bound import ais_bound
    from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR
    from aura_mem_ros.core.checkpoint import load_aura

    layer = load_aura(DEFAULT_MODEL_DIR / "aura")
    base = seed_offset + 100_000  # disjoint from the panel's seeds too
    r = ais_bound(
        layer,
        "MiniGrid-MemoryS13-v0",
        list(range(base, base + 300)),
        list(range(base + 300, base + 400)),
    )
    verdict = (
        "**vacuous**: it exceeds the value range (returns lie in [0, 1])"
        if r.vacuous
        else "**not vacuous**"
    )
    return [
        "## AIS value-loss bound (MiniGrid-MemoryS13)",
        "",
        "The approximate-information-state bound (Subramanian et al., JMLR 2022) for acting "
        "on z_t = (AURA memory state after step t, backbone features of the current view) "
        "instead of the full history: if a reward predictor r_hat(z, a) is within eps and a "
        "next-observation predictor P_hat(o' | z, a) within delta in total variation, then "
        "V*(h) - V_z(h) <= 2 (eps + gamma * delta * span(V)) / (1 - gamma). Predictors: "
        f"small MLPs fitted on {r.n_fit_steps} closed-loop AURA steps (300 episodes), errors "
        f"measured on {r.n_test_steps} held-out steps (100 episodes); observations coded as "
        "symbolic 7x7 view + heading classes (the true next observation is a point mass, so "
        "TV = 1 - P_hat(true o')).",
        "",
        "| term | worst case (sup, as the theorem needs) | average over test steps |",
        "|---|---|---|",
        f"| reward-prediction error eps | {r.eps_max:.4f} | {r.eps_mean:.4f} |",
        f"| next-observation error delta (TV) | {r.delta_max:.4f} | {r.delta_mean:.4f} |",
        f"| gamma, span(V) | {r.gamma}, {r.value_span} | {r.gamma}, {r.value_span} |",
        f"| **bound on the value loss** | **{r.bound_worst_case:.2f}** | "
        f"{r.bound_average_case:.2f} |",
        "",
        f"Measured value gap (oracle full-history return {r.expert_return:.3f} minus AURA "
        f"return {r.policy_return:.3f}, same 100 held-out layouts): "
        f"**{r.measured_value_gap:.3f}**.",
        "",
        f"Verdict: the bound is {verdict}. As in the paper, it is a methodology demonstration: "
        f"the 1/(1 - gamma) = {1 / (1 - r.gamma):.0f} factor and the sup over all histories "
        "dominate. The average-case plug-in (not a valid bound, shown only for scale) is "
        f"{r.bound_average_case:.2f}, "
        f"{'above' if r.bound_average_case > r.measured_value_gap else 'below'} the measured "
        "gap.",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
