"""Numbers, markdown and plots of an evaluation (per bag and over all bags)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_ros.eval.extract import Recording
from aura_mem_ros.eval.replay import ReplayResult, replayable


def binned_write_rate(
    rec: Recording, bins: int = 60, min_width_s: float = 1.0
) -> dict[str, list[float]]:
    """Writes/step in time bins (bin width >= min_width_s) over the recording."""
    if rec.n == 0:
        return {"t_s": [], "writes_per_step": [], "steps": []}
    span = max(float(rec.t_s[-1] - rec.t_s[0]), 1e-9)
    width = max(min_width_s, span / bins)
    edges = np.arange(rec.t_s[0], rec.t_s[-1] + width, width)
    idx = np.clip(np.digitize(rec.t_s, edges) - 1, 0, len(edges) - 1)
    steps = np.bincount(idx, minlength=len(edges)).astype(float)
    writes = np.bincount(idx, weights=rec.wrote.astype(float), minlength=len(edges))
    keep = steps > 0
    return {
        "t_s": [round(float(x), 3) for x in (edges + width / 2)[keep]],
        "writes_per_step": [round(float(x), 5) for x in (writes[keep] / steps[keep])],
        "steps": [int(x) for x in steps[keep]],
    }


def action_stats(rec: Recording, discrete: bool) -> dict[str, Any]:
    if rec.n == 0:
        return {}
    a = rec.actions
    if discrete:
        choice = np.argmax(a[:, -1, :], axis=-1)
        hist = np.bincount(choice, minlength=a.shape[-1])
        return {
            "kind": "discrete",
            "num_actions": int(a.shape[-1]),
            "argmax_histogram": [int(x) for x in hist],
            "argmax_fraction": [round(float(x) / rec.n, 4) for x in hist],
        }
    flat = a.reshape(-1, a.shape[-1])
    return {
        "kind": "continuous",
        "chunk_size": int(a.shape[1]),
        "action_dim": int(a.shape[2]),
        "mean": np.round(flat.mean(0), 5).tolist(),
        "std": np.round(flat.std(0), 5).tolist(),
        "min": np.round(flat.min(0), 5).tolist(),
        "max": np.round(flat.max(0), 5).tolist(),
        "mean_step_change": round(
            float(np.mean(np.abs(np.diff(a[:, 0], axis=0)))) if rec.n > 1 else 0.0, 6
        ),
    }


def latency_stats(rec: Recording) -> dict[str, float]:
    if rec.n == 0:
        return {}
    lat = rec.latency_ms.astype(np.float64)
    return {
        "mean_ms": round(float(lat.mean()), 3),
        **{f"p{q}_ms": round(float(np.percentile(lat, q)), 3) for q in (50, 95, 99)},
        "max_ms": round(float(lat.max()), 3),
    }


def bag_report(
    rec: Recording, discrete: bool, replays: Sequence[ReplayResult] | None
) -> dict[str, Any]:
    writes = int(rec.wrote.sum())
    out: dict[str, Any] = {
        "bag": rec.bag,
        "duration_s": round(rec.duration_s, 3),
        "steps": rec.n,
        "writes": writes,
        "writes_per_step": round(writes / rec.n, 6) if rec.n else 0.0,
        "writes_per_1k_steps": round(1000 * writes / rec.n, 3) if rec.n else 0.0,
        "memory_resets": int(rec.resets.sum()),
        "instructions": rec.instructions,
        "node_parameters": rec.params,
        "write_rate_over_time": binned_write_rate(rec),
        "actions": action_stats(rec, discrete),
        "latency": latency_stats(rec),
        "node_counters": {
            "stats_messages": len(rec.stats.get("t", [])),
            **{f"{k}": v for k, v in rec.stats_totals.items()},
        },
        "observations_matched": (int(rec.matched.sum()) if rec.matched is not None else None),
        # A bag that starts mid-run: steps before its first reset have unknown memory.
        "steps_before_first_reset_skipped": (
            int((~rec.memory_known).sum()) if rec.memory_known is not None else 0
        ),
        "memory_unknown_at_start": rec.memory_unknown_at_start,
        "episodes": len(rec.episode_success),
        "episode_success_rate": (
            round(float(np.mean(rec.episode_success)), 4) if rec.episode_success else None
        ),
        "target_steps": (int(rec.target_found.sum()) if rec.target_found is not None else 0),
    }
    if replays:
        out["replay"] = [r.to_json() for r in replays]
        fid = replays[0]
        mask = replayable(rec)
        same = fid.wrote[mask] == rec.wrote[mask]
        out["replay_fidelity"] = {
            "gate": fid.label,
            "write_decisions_equal": int(same.sum()),
            "of": int(same.size),
            "action_divergence": round(fid.divergence, 8),
            "faithful": bool(same.size and same.all() and fid.divergence < 1e-4),
        }
    return out


def overall(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    steps = sum(r["steps"] for r in reports)
    writes = sum(r["writes"] for r in reports)
    out: dict[str, Any] = {
        "bags": len(reports),
        "steps": steps,
        "writes": writes,
        "writes_per_step": round(writes / steps, 6) if steps else 0.0,
        "duration_s": round(sum(r["duration_s"] for r in reports), 3),
        "node_counters": {
            k: sum(r["node_counters"].get(k, 0) for r in reports)
            for k in ("stale", "dropped", "rejected")
        },
    }
    if all("replay" in r for r in reports) and reports:
        rows: dict[str, dict[str, float]] = {}
        for r in reports:
            for row in r["replay"]:
                # Budget-matched thresholds differ per bag: aggregate them by gate.
                key = row["label"].split(" (thr")[0]
                agg = rows.setdefault(
                    key,
                    {
                        "steps": 0,
                        "writes": 0,
                        "div": 0.0,
                        "dis": 0.0,
                        "has_dis": 0,
                        "tgt": 0.0,
                        "tgt_n": 0,
                    },
                )
                agg["steps"] += row["steps"]
                agg["writes"] += row["writes"]
                agg["div"] += row["action_divergence"] * row["steps"]
                if row["argmax_disagreement"] is not None:
                    agg["dis"] += row["argmax_disagreement"] * row["steps"]
                    agg["has_dis"] = 1
                if row.get("target_error") is not None:
                    n_t = r.get("target_steps") or row["steps"]
                    agg["tgt"] += row["target_error"] * n_t
                    agg["tgt_n"] += n_t
        out["replay"] = [
            {
                "label": k,
                "steps": int(v["steps"]),
                "writes": int(v["writes"]),
                "writes_per_step": round(v["writes"] / v["steps"], 6) if v["steps"] else 0.0,
                "action_divergence": round(v["div"] / v["steps"], 8) if v["steps"] else 0.0,
                "argmax_disagreement": (
                    round(v["dis"] / v["steps"], 6) if v["has_dis"] and v["steps"] else None
                ),
                "target_error": round(v["tgt"] / v["tgt_n"], 6) if v["tgt_n"] else None,
            }
            for k, v in rows.items()
        ]
    episodes = sum(r["episodes"] for r in reports)
    if episodes:
        wins = sum((r["episode_success_rate"] or 0.0) * r["episodes"] for r in reports)
        out["episodes"] = episodes
        out["episode_success_rate"] = round(wins / episodes, 4)
    return out


# -- plots ----------------------------------------------------------------------------------
def plot_all(
    recs: Sequence[Recording],
    replays: Sequence[Sequence[ReplayResult] | None],
    reports: Sequence[dict[str, Any]],
    total: dict[str, Any],
    out: Path,
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, str] = {}
    # 1. write rate over time, per bag (+ the node's own windowed rate from ~/stats).
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for rec, rep in zip(recs, reports, strict=True):
        w = rep["write_rate_over_time"]
        name = Path(rec.bag).name
        ax.plot(w["t_s"], w["writes_per_step"], marker=".", label=f"{name} (actions)")
        if len(rec.stats.get("t", [])):
            ax.plot(
                rec.stats["t"],
                rec.stats["write_rate"],
                ls="--",
                alpha=0.7,
                label=f"{name} (~/stats write_rate)",
            )
    budget = next(
        (
            r["node_parameters"].get("write_rate_budget")
            for r in reports
            if r["node_parameters"].get("write_rate_budget") is not None
        ),
        None,
    )
    if budget is not None:
        ax.axhline(float(budget), color="red", lw=0.8, ls=":", label=f"budget {budget}")
    ax.set(
        xlabel="time in bag [s]",
        ylabel="writes / step",
        title="Memory write rate",
        ylim=(-0.02, 1.02),
    )
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "write_rate.png", dpi=110)
    plt.close(fig)
    files["write_rate"] = "write_rate.png"

    # 2. write events on a timeline: recorded + every replayed gate, one panel per bag.
    fig, axes = plt.subplots(
        len(recs),
        1,
        figsize=(9, 1.2 + 0.32 * (1 + max((len(r) if r else 0) for r in replays)) * len(recs)),
        squeeze=False,
    )
    for ax, rec, reps in zip(axes[:, 0], recs, replays, strict=True):
        rows = [("recorded", rec.wrote)] + [(r.label, r.wrote) for r in (reps or [])]
        for y, (_, wrote) in enumerate(rows):
            steps = np.flatnonzero(wrote)
            ax.scatter(
                steps, np.full(steps.shape, y), marker="|", s=60, color="black" if y == 0 else None
            )
        for r in np.flatnonzero(rec.resets):
            ax.axvline(r, color="grey", lw=0.5, alpha=0.5)
        ax.set_yticks(
            range(len(rows)), [f"{label} ({int(w.sum())})" for label, w in rows], fontsize=7
        )
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlim(-1, max(rec.n, 1))
        ax.set_title(f"{Path(rec.bag).name}: write events (grey: memory resets)", fontsize=9)
    axes[-1, 0].set_xlabel("served step")
    fig.tight_layout()
    fig.savefig(out / "write_events.png", dpi=110)
    plt.close(fig)
    files["write_events"] = "write_events.png"

    # 3. writes vs divergence from the recorded actions, per gate (over all bags); and writes
    # vs error against the target actions when the bags carry them.
    if "replay" in total:
        charts = [
            (
                "action_divergence",
                "mean |action - recorded action|",
                "action divergence",
                "writes_vs_divergence",
            )
        ]
        if any(r.get("target_error") is not None for r in total["replay"]):
            charts.append(
                (
                    "target_error",
                    "error vs target action",
                    "error vs target",
                    "writes_vs_target_error",
                )
            )
        for key_name, ylabel, what, stem in charts:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            # Gates landing on the same point (e.g. always and learned@0.3) share one label.
            points: dict[tuple[float, float], list[str]] = {}
            for row in total["replay"]:
                if row.get(key_name) is None:
                    continue
                key = (round(row["writes_per_step"], 3), round(row[key_name], 5))
                points.setdefault(key, []).append(row["label"])
            for (x, y), labels in points.items():
                recorded = any(label.startswith("recorded") for label in labels)
                ax.scatter(
                    x,
                    y,
                    s=60 if recorded else 30,
                    marker="*" if recorded else "o",
                    color="black" if recorded else None,
                    zorder=3,
                )
                ax.annotate(
                    ",\n".join(labels),
                    (x, y),
                    fontsize=6,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
            ax.set(
                xlabel="writes / step",
                ylabel=ylabel,
                title=f"Counterfactual gates: writes vs {what}",
            )
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(out / f"{stem}.png", dpi=110)
            plt.close(fig)
            files[stem] = f"{stem}.png"
    return files


# -- markdown -------------------------------------------------------------------------------
def _replay_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    targets = any(r.get("target_error") is not None for r in rows)
    lines = [
        "| gate | steps | writes | writes/step | action divergence | argmax disagreement |"
        + (" error vs target |" if targets else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if targets else ""),
    ]
    for r in rows:
        dis = "" if r["argmax_disagreement"] is None else f"{r['argmax_disagreement']:.3f}"
        tgt = ""
        if targets:
            tgt = " |" if r.get("target_error") is None else f" {r['target_error']:.4f} |"
        lines.append(
            f"| {r['label']} | {r['steps']} | {r['writes']} | "
            f"{r['writes_per_step']:.4f} | {r['action_divergence']:.5f} | {dis} |{tgt}"
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    total = report["overall"]
    lines = [
        "# AURA-Mem offline evaluation",
        "",
        f"Generated {report['generated']} by `{report['command']}`.",
        "",
    ]
    if report.get("replay_model"):
        lines += [f"Replay model: `{report['replay_model']}`", ""]
    lines += [
        "## Overall",
        "",
        "| bags | steps | writes | writes/step | stale | dropped | rejected |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {total['bags']} | {total['steps']} | {total['writes']} | "
        f"{total['writes_per_step']:.4f} | {total['node_counters']['stale']} | "
        f"{total['node_counters']['dropped']} | {total['node_counters']['rejected']} |",
        "",
    ]
    if total.get("episodes"):
        lines += [
            f"Episodes (EpisodeResult): {total['episodes']}, success rate "
            f"{total['episode_success_rate']:.3f} (the recorded run).",
            "",
        ]
    if "replay" in total:
        lines += [
            "### Counterfactual replay (all bags)",
            "",
            "Same frozen backbone and observations; only the write gate differs. "
            "*Action divergence* is measured against the actions the node published: how "
            "much another gate would have changed what the robot did, not whether it would "
            "have done better. *Error vs target* (when the bag has target actions: "
            "teleoperation or a simulator's expert) is that quality measure: mean L1, or for "
            "discrete actions the fraction of steps whose argmax differs from the target's. "
            "Replays are open loop: the observations are the recorded ones, so a gate's "
            "different actions do not change what it sees next.",
            "",
            *_replay_table(total["replay"]),
            "",
        ]
    for name, path in report.get("plots", {}).items():
        lines += [f"![{name}]({path})", ""]
    for b in report["bags"]:
        lat = b["latency"]
        lines += [
            f"## {Path(b['bag']).name}",
            "",
            f"- duration {b['duration_s']:.1f} s, steps {b['steps']}, writes {b['writes']}"
            f" ({b['writes_per_step']:.4f}/step, {b['writes_per_1k_steps']:.1f} per 1k),"
            f" memory resets {b['memory_resets']}",
            f"- latency (AuraAction.latency_ms): mean {lat.get('mean_ms', 0):.2f}, p50 "
            f"{lat.get('p50_ms', 0):.2f}, p95 {lat.get('p95_ms', 0):.2f}, p99 "
            f"{lat.get('p99_ms', 0):.2f}, max {lat.get('max_ms', 0):.2f} ms",
            f"- node counters (~/stats): {b['node_counters']}",
            f"- observations found for replay: {b['observations_matched']} of {b['steps']}",
        ]
        if b["steps_before_first_reset_skipped"]:
            lines.append(
                f"- the bag starts mid-run: the {b['steps_before_first_reset_skipped']} steps "
                f"before its first memory reset are not replayed (their memory is unknown)"
            )
        if b["memory_unknown_at_start"]:
            lines.append(
                "- WARNING: the bag starts mid-run and shows no memory reset: the replay "
                "starts from an empty memory where the node's was not, so it cannot be faithful"
            )
        if b["episodes"]:
            lines.append(
                f"- episodes (EpisodeResult): {b['episodes']}, success rate "
                f"{b['episode_success_rate']:.3f}"
            )
        if b["target_steps"]:
            lines.append(f"- steps with a target action: {b['target_steps']}")
        acts = b["actions"]
        if acts.get("kind") == "discrete":
            lines.append(f"- argmax action fractions: {acts['argmax_fraction']}")
        elif acts:
            lines.append(f"- action mean {acts['mean']}, std {acts['std']}")
        if "replay_fidelity" in b:
            f = b["replay_fidelity"]
            lines.append(
                f"- replay fidelity ({f['gate']}): {f['write_decisions_equal']}/{f['of']}"
                f" write decisions equal, divergence {f['action_divergence']:.2e} -> "
                f"{'faithful' if f['faithful'] else 'NOT faithful'}"
            )
        lines.append("")
        if "replay" in b:
            lines += [*_replay_table(b["replay"]), ""]
    return "\n".join(lines)
