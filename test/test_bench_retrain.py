"""``aura-mem-bench retrain``'s recipe option (--train-args) and its table, without training."""

from __future__ import annotations

import argparse

import pytest

from aura_mem_dev.bench import retrain


def _args(train_args: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    retrain.add_arguments(p)
    return p.parse_args(["--train-args", train_args] if train_args else [])


@pytest.mark.parametrize("train_args", ["", "--head-hidden 128 --refit"])
def test_train_args_reach_aura_mem_train_and_every_row(monkeypatch, tmp_path, train_args):
    calls: list[list[str]] = []

    def fake_train(argv: list[str]) -> int:
        calls.append(argv)
        return 3  # "not better than its start": nothing saved, so no closed-loop panel runs

    monkeypatch.setattr("aura_mem_ros.retrain.cli.main", fake_train)
    rows = retrain.train_and_serve(50, 0, ["bag_a", "bag_b"], 0.0, _args(train_args), tmp_path)
    (argv,) = calls
    extra = train_args.split()
    assert argv[len(argv) - len(extra) :] == extra  # appended after the benchmark's own
    out = argv[argv.index("--out") + 1]
    # a recipe's layer does not overwrite the defaults' layer in the same --work
    assert out.endswith("aura_50_seed0" + ("_head_hidden_128_refit" if train_args else ""))
    assert [r["env"] for r in rows] == list(retrain.EVAL_ENVS)
    assert all(r["train_args"] == train_args and r["train_rc"] == 3 for r in rows)

    table = retrain.render({"command": "c", "targets": "t", "bags_from": "ros", "runs": rows})
    header, rule, *body = [line for line in table.splitlines() if line.startswith("|")]
    assert "extra arguments" in header and len(body) == len(retrain.EVAL_ENVS)
    cells = [c.strip() for c in body[0].strip("|").split("|")]
    assert len(cells) == header.count("|") - 1 == rule.count("|") - 1
    assert cells[1] == (f"`{train_args}`" if train_args else "defaults")
    assert cells[4] == "not saved (rc 3)"


def test_rows_without_train_args_render_as_defaults() -> None:
    """Result files written before --train-args existed still render (merged tables)."""
    row = {"episodes": 200, "seed": 0, "env": "E", "success": 1.0, "ci95": [0.96, 1.0]}
    row |= {"writes_per_episode": 1.0, "record_seconds": 0, "train_seconds": 9, "train_rc": 0}
    table = retrain.render({"command": "c", "targets": "t", "runs": [row]})
    assert "| 200 | defaults | 0 | E | 1.000 | [0.960, 1.000] | 1.00 | reused | 9 |" in table


def test_merged_results_number_each_row_with_the_command_that_produced_it() -> None:
    """--merge keeps which run each row came from (runs may stand on different recordings of
    the bags), also through a second merge."""
    row = {"episodes": 50, "seed": 0, "env": "E", "success": 0.9, "ci95": [0.8, 0.95]}
    row |= {"writes_per_episode": 1.0, "record_seconds": 0, "train_seconds": 9, "train_rc": 0}
    one = {"command": "a", "targets": "t", "runs": [row]}
    two = {"command": "b", "targets": "t", "runs": [row | {"seed": 1}, row | {"seed": 2}]}
    first = retrain.merge([one, two])
    assert first["commands"] == ["a", "b"] and first["command"] == "a && b"
    assert [(r["run"], r["seed"]) for r in first["runs"]] == [(1, 0), (2, 1), (2, 2)]
    again = retrain.merge([first, {"command": "c", "targets": "t", "runs": [row]}])
    assert again["commands"] == ["a", "b", "c"]
    assert [r["run"] for r in again["runs"]] == [1, 2, 2, 3]
    table = retrain.render(again)
    assert "1. `a`" in table and "3. `c`" in table
    assert "| 3 | 50 | defaults | 0 | E | 0.900 |" in table


def test_coverage_splits_held_out_episodes_by_what_training_saw_of_their_start() -> None:
    from aura_mem_dev.bench import retrain_coverage as cov
    from aura_mem_ros.sim.env import make_env

    env = make_env("MiniGrid-MemoryS13-v0")
    seeds = range(retrain.EVAL_OFFSET, retrain.EVAL_OFFSET + 30)
    configs = {s: cov.start_configuration(env, s) for s in seeds}
    assert configs == {s: cov.start_configuration(env, s) for s in seeds}  # by seed alone
    cue, side, dx, dy, heading = configs[retrain.EVAL_OFFSET]
    assert cue in ("key", "ball") and side in ("up", "down") and dx >= 1 and dy == 1
    assert heading in range(4)
    assert len(set(configs.values())) > 5  # starts differ
    # the bags' first training episode's start is covered, by construction of the seeds
    seen = cov.training_configurations(4)
    first = cov.start_configuration(env, retrain.BAG_SEED0 * 100_000)
    assert first in seen and len(seen) <= 4
    views = {cov.cue_view(c) for c in seen}
    shown = [s for s in seeds if configs[s] in seen]
    new_pair = [s for s in seeds if configs[s] not in seen and cov.cue_view(configs[s]) in views]
    rows = [{"seed": s, "success": s in shown} for s in seeds]
    split = cov.split_by_coverage(rows, configs, seen)
    assert split["shown"]["episodes"] == len(shown)
    assert split["view_shown"]["episodes"] == len(new_pair)
    assert sum(split[p]["episodes"] for p in cov.PARTS) == 30
    assert split["view_shown"]["successes"] == split["view_never_shown"]["successes"] == 0
    if shown:
        assert split["shown"]["success"] == 1.0
    # the view drops only the match side: configurations differing in it share a view
    assert cov.cue_view(("key", "up", 3, 1, 0)) == cov.cue_view(("key", "down", 3, 1, 0))
