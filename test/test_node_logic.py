"""The node's logic without ROS: pipeline, clamp, statistics and the diagnostics rules."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus

from aura_mem_ros.backbones import BackboneError, make_backbone
from aura_mem_ros.persistence import MemoryStore, RestoreResult, RestoreStatus
from aura_mem_ros.ros import diagnostics
from aura_mem_ros.ros.pipeline import AuraPipeline, InputRejectedError, SupersededError
from aura_mem_ros.ros.stats import NodeStats
from aura_mem_ros.serving import ActionClamp, ServingSpec


def image(value: int) -> np.ndarray:
    out = np.zeros((16, 16, 3), np.uint8)
    out[..., value % 3] = 50 + value
    return out


def pipeline(
    gate: str = "always",
    store: MemoryStore | None = None,
    reset_policy: str = "instruction_change",
    **toy,
) -> AuraPipeline:
    backbone = make_backbone("toy", **toy)
    runtime, model_id = ServingSpec("toy", gate=gate).build_runtime(backbone)
    clamp = ActionClamp([], [], backbone.action_dim)
    return AuraPipeline(
        backbone,
        runtime,
        model_id,
        NodeStats(50, 1),
        clamp,
        store,
        log=lambda _: None,
        reset_policy=reset_policy,
    )


def test_clamp_broadcast_per_dim_and_validation() -> None:
    c = ActionClamp([-1.0], [1.0], 3)
    out, clipped = c.apply(np.array([[0.5, 2.0, -3.0]], np.float32))
    np.testing.assert_array_equal(out, [[0.5, 1.0, -1.0]])
    assert clipped
    assert not ActionClamp([-1, -2, -3], [1, 2, 3], 3).apply(np.zeros((2, 3)))[1]
    assert not ActionClamp([], [], 3).enabled
    for low, high in (([-1.0], []), ([-1.0, 0.0], [1.0, 1.0]), ([1.0], [-1.0])):
        with pytest.raises(ValueError):
            ActionClamp(low, high, 3)


def test_rejections_leave_memory_untouched() -> None:
    p = pipeline()
    p.set_instruction("task")
    fresh = p.runtime.state_bytes()

    def broken(obs):
        raise BackboneError("sensor fusion exploded")

    original = p.backbone.step
    p.backbone.step = broken
    with pytest.raises(InputRejectedError) as err:
        p.step([image(0)], None)
    assert err.value.reason == "backbone_error" and "exploded" in err.value.message
    p.backbone.step = lambda obs: replace(original(obs), action=np.full((2, 3), np.nan))
    with pytest.raises(InputRejectedError, match="NaN"):
        p.step([image(0)], None)
    p.backbone.step = original
    assert p.runtime.state_bytes() == fresh and p.stats.snapshot().steps == 0
    result = p.step([image(0)], None)
    assert result.wrote and p.runtime.state_bytes() != fresh


def test_no_instruction_and_empty_instruction() -> None:
    p = pipeline()
    with pytest.raises(InputRejectedError) as err:
        p.step([image(0)], None)
    assert err.value.reason == "no_instruction"
    p.set_instruction("task")
    with pytest.raises(InputRejectedError) as err:
        p.set_instruction("   ")
    assert err.value.reason == "empty_instruction" and p.instruction == "task"


@pytest.mark.parametrize("policy", ["instruction_change", "service", "never"])
def test_instruction_change_per_reset_policy(policy: str) -> None:
    p = pipeline(reset_policy=policy)
    assert p.set_instruction("a") == "first"
    fresh = p.runtime.state_bytes()
    p.step([image(1)], None)
    written = p.runtime.state_bytes()
    assert p.set_instruction("a") == "unchanged"
    if policy == "instruction_change":
        assert p.set_instruction("b") == "reset" and p.runtime.state_bytes() == fresh
    else:
        assert p.set_instruction("b") == "kept" and p.runtime.state_bytes() == written
    p.step([image(2)], None)
    assert p.request_reset() is (policy != "never")
    assert (p.runtime.state_bytes() == fresh) is (policy != "never")


def test_state_file_follows_the_instruction_only_under_instruction_change(tmp_path) -> None:
    path = tmp_path / "s.bin"
    for policy, restored_under_another_instruction in (
        ("instruction_change", False),
        ("service", True),
        ("never", True),
    ):
        path.unlink(missing_ok=True)
        first = pipeline(store=MemoryStore(path, 4224), reset_policy=policy)
        first.set_instruction("task")
        first.persist(first.step([image(3)], None))
        first.set_instruction("second task")  # kept (service/never): saves stay valid
        first.persist(first.step([image(4)], None))
        saved = first.runtime.state_bytes()
        second = pipeline(store=MemoryStore(path, 4224), reset_policy=policy)
        second.set_instruction("a third task")
        restored = second.restore_result.status is RestoreStatus.RESTORED
        assert restored is restored_under_another_instruction, policy
        assert (second.runtime.state_bytes() == saved) is restored, policy


def test_step_straddling_a_reset_is_discarded_and_not_persisted(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "s.bin", 4224)
    p = pipeline(store=store)
    p.set_instruction("task")
    entered, release = threading.Event(), threading.Event()
    original = p.backbone.step

    def slow(obs):
        entered.set()
        release.wait(5)
        return original(obs)

    p.backbone.step = slow
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(_try_step(p)))
    worker.start()
    assert entered.wait(5)
    p.reset()  # must not wait for the backbone
    release.set()
    worker.join(5)
    assert isinstance(outcome[0], SupersededError)
    assert p.stats.snapshot().superseded == 1 and not (tmp_path / "s.bin").exists()


def _try_step(p: AuraPipeline) -> object:
    try:
        return p.step([image(0)], None)
    except SupersededError as exc:
        return exc


def test_persist_only_after_gate_writes(tmp_path: Path) -> None:
    for gate, expect_file in (("never", False), ("always", True)):
        store = MemoryStore(tmp_path / f"{gate}.bin", 4224)
        p = pipeline(gate, store)
        p.set_instruction("task")
        for i in range(3):
            p.persist(p.step([image(i)], None))
        assert (tmp_path / f"{gate}.bin").exists() is expect_file
        assert store.flushes == (3 if expect_file else 0)


def test_restore_on_first_instruction(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    p1 = pipeline(store=MemoryStore(path, 4224))
    p1.set_instruction("task")
    p1.persist(p1.step([image(2)], None))
    saved = p1.runtime.state_bytes()
    p2 = pipeline(store=MemoryStore(path, 4224))
    p2.set_instruction("task")
    assert p2.restore_result.status is RestoreStatus.RESTORED
    assert p2.runtime.state_bytes() == saved
    p3 = pipeline(store=MemoryStore(path, 4224))
    p3.set_instruction("another task")
    assert p3.restore_result.status is RestoreStatus.MISMATCH
    assert p3.runtime.state_bytes() != saved
    p4 = pipeline(store=MemoryStore(path, 4224), d_model=8)  # another model
    p4.set_instruction("task")
    assert p4.restore_result.status is RestoreStatus.MISMATCH


def test_stats_windows_and_warmup() -> None:
    s = NodeStats(window=4, warmup_steps=1)
    for i, wrote in enumerate([True, True, False, False, False, False]):
        s.record_step(wrote, latency_ms=100.0 if i == 0 else 10.0, clipped=False)
    snap = s.snapshot()
    assert snap.steps == 6 and snap.writes == 2
    assert snap.recent_write_rate == 0.0  # the last 4 steps wrote nothing
    assert snap.latency_samples == 4 and snap.latency_p95_ms == pytest.approx(10.0)
    s.record_rejected("bad_proprio", "nan")
    s.record_rejected("backbone_error", "boom")
    snap = s.snapshot()
    assert snap.rejected_inputs == 2 and snap.consecutive_backbone_errors == 1
    s.record_step(False, 1.0, False)
    assert s.snapshot().consecutive_backbone_errors == 0
    with pytest.raises(ValueError):
        s.record_rejected("made_up", "x")


def _diag_input(**kw) -> diagnostics.DiagInput:
    stats = NodeStats(100, 0)
    for _ in range(kw.pop("steps", 0)):
        stats.record_step(kw.get("wrote", True), 5.0, False)
    kw.pop("wrote", None)
    base = dict(
        stats=stats.snapshot(),
        previous=None,
        lifecycle_state="active",
        backbone="toy",
        model_id="m",
        configure_error="",
        state_bytes=4224,
        kv_bytes_per_step=256,
        file_bytes=4276,
        write_rate_budget=0.25,
        max_latency_ms=100.0,
        flash_size_bytes=8 * 1024**3,
        flash_pe_cycles=3000,
        flash_write_amplification=1.0,
    )
    base.update(kw)
    return diagnostics.DiagInput(**base)


def _levels(d: diagnostics.DiagInput) -> dict[str, bytes]:
    return {s.name: s.level for s in diagnostics.run_tasks(d)}


def test_diagnostics_all_ok_when_quiet() -> None:
    assert set(_levels(_diag_input()).values()) == {DiagnosticStatus.OK}


def test_diagnostics_rules() -> None:
    assert _levels(_diag_input(steps=30))["memory"] == DiagnosticStatus.WARN
    assert _levels(_diag_input(steps=10))["memory"] == DiagnosticStatus.OK  # too few steps
    assert _levels(_diag_input(steps=30, wrote=False))["memory"] == DiagnosticStatus.OK
    assert _levels(_diag_input(steps=3, max_latency_ms=1.0))["latency"] == DiagnosticStatus.WARN
    assert _levels(_diag_input(configure_error="x"))["backbone"] == DiagnosticStatus.ERROR
    corrupt = RestoreResult(RestoreStatus.CORRUPT, "checksum mismatch")
    d = _diag_input(state_file="/tmp/s", restore=corrupt)
    assert _levels(d)["persistence"] == DiagnosticStatus.WARN
    assert _levels(replace(d, flushes=1))["persistence"] == DiagnosticStatus.OK  # replaced
    assert _levels(replace(d, persist_last_error="disk full"))["persistence"] == (
        DiagnosticStatus.WARN
    )


def test_diagnostics_flash_projection_gated_vs_always() -> None:
    stats = NodeStats(100, 0)
    stats.set_active(True)
    for i in range(70):
        stats.record_step(i % 7 == 0, 5.0, False)  # 10 writes in 70 steps
    snap = replace(stats.snapshot(), active_s=70.0)
    d = _diag_input(stats=snap)
    memory = {k: v for k, v in diagnostics.memory_task(d).values}
    gated = float(memory["projected_flash_lifetime_years"])
    always = float(memory["always_write_flash_lifetime_years"])
    assert gated == pytest.approx(7 * always, rel=1e-4)  # reported to 6 digits
    assert memory["kv_equivalent_bytes"] == str(70 * 256)


def test_serving_spec_reads_parameters_as_the_node_documents_them() -> None:
    params = {
        "backbone": "toy",
        "backbone_args": '{"d_model": 8, "chunk_size": 2, "action_dim": 3}',
        "aura_checkpoint": "bundled",
        "gate": "always",
        "gate_threshold": -1.0,
        "seed": 4,
        "fused_step": False,
        "action_min": [-1.0],
        "action_max": [1.0],
    }
    spec = ServingSpec.from_params(params)
    assert spec.backbone_args == {"d_model": 8, "chunk_size": 2, "action_dim": 3}
    assert spec.threshold is None  # negative: the checkpoint's own threshold
    assert ServingSpec.from_params({**params, "gate_threshold": 0.3}).threshold == 0.3
    backbone = spec.build_backbone()
    assert spec.resolve_checkpoint(backbone) == ""  # toy ships no layer: untrained
    runtime, _ = spec.build_runtime(backbone)
    assert (runtime.gate, runtime.seed, runtime.threshold, runtime._fused) == (
        "always",
        4,
        None,
        None,
    )
    assert spec.clamp(backbone).enabled
    # overrides win where given; an absent parameter needs nothing shipped
    over = ServingSpec.from_params(params, backbone="mini", backbone_args="{}", seed=None)
    assert (over.backbone, over.backbone_args, over.seed) == ("mini", {}, 4)
    bare = ServingSpec.from_params({"backbone": "mini"})
    assert (bare.aura_checkpoint, bare.gate, bare.threshold) == ("", "learned", None)
    for bad in ("[1]", "{nope"):
        with pytest.raises(ValueError, match="backbone_args"):
            ServingSpec.from_params({**params, "backbone_args": bad})
    with pytest.raises(ValueError, match="no backbone"):
        ServingSpec.from_params({})
    # a checkpoint trained for another backbone is refused with both shapes
    mini_ckpt = make_backbone("mini").bundled_aura_checkpoint()
    with pytest.raises(ValueError, match="was trained for"):
        replace(spec, aura_checkpoint=mini_ckpt).build_runtime(backbone)


def test_bundled_checkpoint_is_the_backbones_shipped_layer() -> None:
    from aura_mem_ros.backbones import make_backbone
    from aura_mem_ros.core.checkpoint import load_aura

    mini = make_backbone("mini")
    shipped = mini.bundled_aura_checkpoint()
    assert shipped is not None
    runtime, ident = ServingSpec(mini.name, aura_checkpoint="bundled").build_runtime(mini)
    want = load_aura(shipped).state_dict()
    got = runtime.layer.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert ident == ServingSpec(mini.name, aura_checkpoint=shipped).build_runtime(mini)[1]
    untrained = ServingSpec(mini.name, aura_checkpoint="").build_runtime(mini)[1]
    assert ident != untrained
    # A backbone that ships no layer gets the untrained one (actions = the backbone's).
    toy = make_backbone("toy", d_model=8)
    assert toy.bundled_aura_checkpoint() is None
    assert (
        ServingSpec(toy.name, aura_checkpoint="bundled").build_runtime(toy)[1]
        == ServingSpec(toy.name, aura_checkpoint="").build_runtime(toy)[1]
    )


def test_bundled_under_reset_policy_never_is_the_never_reset_layer_where_one_ships() -> None:
    class Ships:
        def bundled_aura_checkpoint(self, never_reset: bool = False) -> str | None:
            return "/models/aura_never_reset" if never_reset else "/models/aura"

    class ShipsOnePerEpisode:
        def bundled_aura_checkpoint(self, never_reset: bool = False) -> str | None:
            return None if never_reset else "/models/aura"

    def spec(policy: str, checkpoint: str = "bundled") -> ServingSpec:
        params = {"backbone": "mini", "aura_checkpoint": checkpoint, "reset_policy": policy}
        return ServingSpec.from_params(params)

    def resolved(policy: str, backbone: object) -> str:
        return spec(policy).resolve_checkpoint(backbone)  # type: ignore[arg-type]

    assert resolved("never", Ships()) == "/models/aura_never_reset"
    assert resolved("instruction_change", Ships()) == "/models/aura"
    assert resolved("service", Ships()) == "/models/aura"
    assert resolved("never", ShipsOnePerEpisode()) == "/models/aura"
    # the node warns exactly when never-reset falls back to the per-episode layer
    assert spec("never").never_reset_fallback(ShipsOnePerEpisode())  # type: ignore[arg-type]
    assert not spec("never").never_reset_fallback(Ships())  # type: ignore[arg-type]
    assert not spec("service").never_reset_fallback(ShipsOnePerEpisode())  # type: ignore[arg-type]
    assert not spec("never", "/my/layer").never_reset_fallback(ShipsOnePerEpisode())  # type: ignore[arg-type]


def test_fused_step_parameter_serves_the_same_actions_and_memory_identity() -> None:
    """fused_step only changes how the step is computed: same actions, writes, state key."""
    mini = make_backbone("mini")
    fused, ident_fused = ServingSpec("mini", aura_checkpoint="bundled").build_runtime(mini)
    reference, ident_ref = ServingSpec(
        "mini", aura_checkpoint="bundled", fused=False
    ).build_runtime(mini)
    assert fused._fused is not None and reference._fused is None
    assert ident_fused == ident_ref  # a state file saved by one is valid for the other
    rng = np.random.default_rng(0)
    for _ in range(20):
        feats = rng.standard_normal(mini.d_model).astype(np.float32)
        base = rng.standard_normal((mini.chunk_size, mini.action_dim)).astype(np.float32)
        a, b = fused.select_action(feats, base), reference.select_action(feats, base)
        assert a.wrote == b.wrote
        np.testing.assert_allclose(a.action, b.action, rtol=1e-4, atol=1e-5)
    assert fused.writes == reference.writes
