"""aura-mem-train's feature cache (retrain/features.py), single process, no Ray.

The reference is what aura-mem-train did before the cache existed: ``extract_episodes`` with
the backbone's ``step`` per frame. Cached, uncached and cache-hit data must all equal it, and
a hit must not call the backbone at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aura_mem_dev.simbag import write_sim_bag
from aura_mem_ros.backbones.base import Observation
from aura_mem_ros.backbones.mini import MiniBackbone
from aura_mem_ros.eval.extract import Topics
from aura_mem_ros.retrain.cli import build_parser, train_from_bags
from aura_mem_ros.retrain.data import Episode, extract_episodes
from aura_mem_ros.retrain.features import bag_content_hash, load_training_data

pytestmark = pytest.mark.timeout(180)
ENV = "MiniGrid-MemoryS7-v0"


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("bags")
    out = []
    for i in range(2):
        write_sim_bag(root / f"bag{i}", episodes=5, env_id=ENV, seed=i)
        out.append(str(root / f"bag{i}"))
    return out


def _args(bags: list[str], *extra: str) -> object:
    return build_parser().parse_args(
        ["--bags", *bags, "--out", "unused", "--backbone", "mini", "--quiet", *extra]
    )


def _reference(bags: list[str]) -> list[Episode]:
    """The pre-cache path, inline: the backbone's step on every paired frame."""
    backbone = MiniBackbone()
    topics = Topics(target="/expert/action")

    def step(obs):
        out = backbone.step(Observation(tuple(obs.images[:1]), obs.instruction, obs.proprio))
        return out.features, out.action

    episodes: list[Episode] = []
    for bag in bags:
        episodes += extract_episodes(bag, topics, step, backbone.reset, {}, 2.0, progress=False)
    return episodes


def _assert_same(got: list[Episode], want: list[Episode]) -> None:
    assert [len(e) for e in got] == [len(e) for e in want]
    assert [Path(e.bag).resolve() for e in got] == [Path(e.bag).resolve() for e in want]
    for g, w in zip(got, want, strict=True):
        for field in ("features", "base", "targets"):
            a, b = np.stack(getattr(g, field)), np.stack(getattr(w, field))
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a, b)


@pytest.fixture
def step_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts MiniBackbone.step calls (every backbone pass goes through it)."""
    calls = [0]
    original = MiniBackbone.step

    def counting(self, obs):
        calls[0] += 1
        return original(self, obs)

    monkeypatch.setattr(MiniBackbone, "step", counting)
    return calls


def test_cached_and_uncached_data_equal_and_a_hit_skips_the_backbone(
    bags: list[str], tmp_path: Path, step_calls: list[int]
) -> None:
    reference = _reference(bags)
    frames = sum(len(e) for e in reference)
    assert len(reference) == 10 and frames > 20
    step_calls[0] = 0
    cache = str(tmp_path / "cache")

    first = load_training_data(_args(bags, "--feature-cache", cache))
    assert step_calls[0] == frames  # one backbone call per training frame
    assert (first.stats.extracted, first.stats.from_cache) == (2, 0)
    _assert_same(first.episodes(), reference)
    assert len(list(Path(cache).glob("*.npz"))) == 2  # one entry per bag

    second = load_training_data(_args(bags, "--feature-cache", cache))
    assert step_calls[0] == frames  # not one more call
    assert (second.stats.extracted, second.stats.from_cache) == (0, 2)
    assert second.stats.frames_extracted == 0 and second.stats.seconds_extracting == 0
    _assert_same(second.episodes(), reference)
    assert second.backbone == first.backbone  # shape + identity come from the cache too

    uncached = load_training_data(_args(bags, "--feature-cache", "none"))
    assert step_calls[0] == 2 * frames
    _assert_same(uncached.episodes(), reference)


def test_the_key_covers_settings_bag_bytes_and_corruption(
    bags: list[str], tmp_path: Path, step_calls: list[int], capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    load_training_data(_args(bags[:1], "--feature-cache", str(cache)))
    n0 = step_calls[0]
    # Another episode gap pairs the same frames into other episodes: a miss, not a stale hit.
    gap = load_training_data(
        _args(bags[:1], "--feature-cache", str(cache), "--episode-gap", "0.05")
    )
    assert gap.stats.extracted == 1 and step_calls[0] == 2 * n0
    assert len(gap.episodes()) > 5  # every 0.5 s pause between episodes now splits more
    # A different bag at the same path (re-recorded): its bytes differ, so it misses.
    other = tmp_path / "same_path"
    write_sim_bag(other, episodes=3, env_id=ENV, seed=7)
    load_training_data(_args([str(other)], "--feature-cache", str(cache)))
    calls = step_calls[0]
    rewritten = tmp_path / "rewritten"
    other.rename(rewritten)
    write_sim_bag(other, episodes=3, env_id=ENV, seed=8)
    again = load_training_data(_args([str(other)], "--feature-cache", str(cache)))
    assert again.stats.extracted == 1 and step_calls[0] > calls
    # A truncated entry is reported and recomputed, never trusted.
    digest = bag_content_hash(other)
    entry = next(
        p for p in cache.glob("*.json") if json.loads(p.read_text())["bag_sha256"] == digest
    )
    npz = entry.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:100])
    fixed = load_training_data(_args([str(other)], "--feature-cache", str(cache)))
    assert fixed.stats.extracted == 1
    assert "unreadable" in capsys.readouterr().err
    _assert_same(fixed.episodes(), again.episodes())


def test_training_from_the_cache_trains_the_same_layer(bags: list[str], tmp_path: Path) -> None:
    cards = []
    for run in range(2):
        cache = str(tmp_path / "cache")  # 25 iterations: the plumbing, not a better layer
        args = _args(bags, "--feature-cache", cache, "--max-iterations", "25", "--allow-worse")
        args.out = str(tmp_path / f"run{run}")
        cards.append(train_from_bags(args))
    assert cards[0]["data"]["features"]["extracted"] == 2
    assert cards[1]["data"]["features"]["from_cache"] == 2
    assert cards[0]["backbone"] == cards[1]["backbone"]
    assert cards[0]["validation"] == cards[1]["validation"]
    assert cards[0]["threshold"] == cards[1]["threshold"]


def test_the_robot_install_needs_no_ray(bags: list[str], tmp_path: Path) -> None:
    """aura-mem-train imports without ray, and --ray without it is a clear error."""
    code = (
        "import sys\n"
        "import aura_mem_ros.retrain.cli as cli, aura_mem_ros.retrain.features\n"
        "assert 'ray' not in sys.modules, 'aura-mem-train imported ray'\n"
        "sys.modules['ray'] = None\n"  # as if not installed: `import ray` fails
        "sys.exit(cli.main(['--bags', sys.argv[1], '--out', sys.argv[2], '--backbone', 'mini',\n"
        "                   '--quiet', '--feature-cache', 'none', '--ray', 'local']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, bags[0], str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--ray needs the ray package" in proc.stderr


def test_a_frame_the_backbone_refuses_is_left_out_not_the_bag(bags, capsys) -> None:
    """E.g. the recorder had no joint state yet for a frame: that frame is skipped, and said."""
    from aura_mem_ros.backbones.base import BackboneError

    backbone = MiniBackbone()
    calls = [0]

    def step(obs):
        calls[0] += 1
        if calls[0] == 3:
            raise BackboneError("mini needs proprio = [heading_rad]")
        out = backbone.step(Observation(tuple(obs.images[:1]), obs.instruction, obs.proprio))
        return out.features, out.action

    topics = Topics(target="/expert/action")
    got = extract_episodes(bags[0], topics, step, backbone.reset, {}, 2.0, progress=False)
    want = _reference(bags[:1])
    assert sum(len(e) for e in got) == sum(len(e) for e in want) - 1
    assert len(got) == len(want)  # no episode lost or split
    assert "1 frame(s) left out" in capsys.readouterr().err
