"""``aura-mem-bench``: one entry point, one module per subcommand.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Modules
are imported only when their subcommand runs, so ``footprint`` never pays for gymnasium.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
import sys
from pathlib import Path

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "footprint": ("aura_mem_dev.bench.footprint", "state bytes of AURA vs a KV-cache, measured"),
    "synthetic": ("aura_mem_dev.bench.synthetic", "the controlled synthetic memory benchmark"),
    "closed-loop": ("aura_mem_dev.bench.closed_loop", "MiniGrid-Memory closed-loop panel"),
    "never-reset-soak": (
        "aura_mem_dev.bench.never_reset_soak",
        ">= 100,000 closed-loop steps without any reset, per window",
    ),
    "perf": ("aura_mem_dev.bench.perf", "per-step latency, node latency and memory"),
    "faults": ("aura_mem_dev.bench.faults", "inject every fault of the reliability table"),
    "gate-cost": (
        "aura_mem_dev.bench.gate_cost",
        "seconds per 1,000 steps of the counterfactual gate objective",
    ),
    "retrain": (
        "aura_mem_dev.bench.retrain",
        "bags -> aura-mem-train from a fresh layer -> closed-loop panel",
    ),
    "retrain-coverage": (
        "aura_mem_dev.bench.retrain_coverage",
        "retrained layers' held-out episodes split by what the bags showed of their start",
    ),
    "serving-latency": (
        "aura_mem_dev.bench.serving_latency",
        "the node end to end with joint states at camera rate",
    ),
    "spawn-recurrence": (
        "aura_mem_dev.bench.spawn_recurrence",
        "why one write per episode cannot run MiniGrid-Memory never-reset (issue 12)",
    ),
    "train-sweep": ("aura_mem_dev.scale.train_sweep", "aura-mem-train over budgets x seeds (Ray)"),
}


def command_line(sub: str) -> str:
    """How this run was started, as a user would type it (reports quote it; shell-quoted, so
    an argument with spaces such as ``--train-args '--head-hidden 128'`` reads back)."""
    if sys.argv[1:2] == [sub]:
        return shlex.join(["aura-mem-bench", *sys.argv[1:]])
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path(__file__).resolve().parents[2])
    return shlex.join(["python", str(script), *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aura-mem-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        # Only the chosen subcommand's module is imported (and may add its arguments).
        if argv and argv[0] == name:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            modules[name] = module
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args))


if __name__ == "__main__":
    sys.exit(main())
