"""What ``aura-mem-bench perf`` measures, as types. Saved as one flat JSON object
(docs/results/perf.json: ``PerfResult.to_dict``) and read back to re-render the report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, TypedDict

# The rates (Hz) the node is ramped through to find the highest sustainable one.
RAMP_RATES = (30.0, 60.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0, 800.0, 1000.0)


class Stats(TypedDict, total=False):
    """Latency percentiles of one series (us for a step, ms for the node); p95 for the node."""

    p50: float
    p95: float
    p99: float
    mean: float


class NodeRun(TypedDict, total=False):
    """Frames streamed to the node at one rate (``sustained`` only in the rate ramp)."""

    rate_hz: float
    frames_sent: int
    actions: int
    served_fraction: float
    dropped_frames: int
    e2e_ms: Stats
    inference_ms: Stats
    achieved_rate_hz: float
    sustained: bool


class Soak(TypedDict):
    rate_hz: float
    steps: int
    frames_sent: int
    dropped_frames: int
    e2e_ms: Stats
    seconds: float
    rss_series: list[tuple[float, int, float]]  # (s since start, steps served, RSS MB)


@dataclass
class StepCost:
    """AURA vs the KV-cache per step, by horizon (keys: the horizon as text, JSON-style)."""

    aura_step_us: dict[str, Stats]
    kv_step_us: dict[str, Stats]
    aura_state_bytes: dict[str, int]
    kv_state_bytes: dict[str, int]
    aura_step_p50_us_by_round: dict[str, list[float]]
    kv_step_p50_us_by_round: dict[str, list[float]]
    rounds: int
    aura_reference_step_us: Stats  # AuraLayer.step behind the same wrapper (no kernel)
    kv_layer_step_us: dict[str, Stats]  # KVMemory.step, tensors in, no wrapper
    aura_p50_us_by_block: dict[str, Any]  # {"block_steps": n, "p50_by_round": [[...], ...]}
    aura_writes: int
    aura_steps: int
    aura_run_seconds: float
    # per AURA round: wall and thread-CPU us per step, hypervisor steal ticks
    aura_round_cpu: list[dict[str, float]] | None = None


@dataclass
class NodeResult:
    node_command: str
    rss_mb_after_warmup: float
    node_latency_ms: dict[str, Stats]  # by rate (Hz, as text)
    node_rate_runs: dict[str, NodeRun]
    node_max_rate_hz: float
    node_ramp: list[NodeRun]
    rss_mb_start: float
    rss_mb_end: float
    soak: Soak
    rss_growth_pct: float
    node_profile: dict[str, Any] | None  # pyspy.summarise_raw_profile, or {"error": ...}


@dataclass
class PerfMeta:
    date_utc: str
    command: str
    host: str
    cpu: str
    cpus: int
    loadavg_before: list[float]
    loadavg_after: list[float]
    torch: str
    torch_threads: int
    samples: int
    ramp_seconds: float
    seconds: float
    quick: bool = False
    nice: int = 0


@dataclass
class PerfResult:
    steps: StepCost
    matvec_floor_us: Stats  # one 4096 x 288 torch.mv: the arithmetic floor
    meta: PerfMeta
    aura_breakdown_p50_us: dict[str, float] | None = None  # steps.aura_breakdown_us
    fused_rss_mb: dict[str, float] | None = None  # steps.fused_rss_cost_mb
    gemv_cache_us: dict[str, Any] | None = None  # steps.gemv_from_dram_us
    aura_profile: list[dict[str, Any]] | None = None  # steps.profile_aura_ops
    node: NodeResult | None = None  # None with --no-node

    _EXTRAS = ("matvec_floor_us", "aura_breakdown_p50_us", "fused_rss_mb", "gemv_cache_us")

    def to_dict(self) -> dict[str, Any]:
        """One flat object: the step keys, the extras, the node keys, then ``meta``."""
        out = {k: v for k, v in dataclasses.asdict(self.steps).items() if v is not None}
        for name in (*self._EXTRAS, "aura_profile"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.node is not None:
            out.update(dataclasses.asdict(self.node))
        out["meta"] = dataclasses.asdict(self.meta)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerfResult:
        def pick(kind: type) -> dict[str, Any]:
            return {f.name: data[f.name] for f in fields(kind) if f.name in data}

        node = NodeResult(**pick(NodeResult)) if "node_command" in data else None
        return cls(
            steps=StepCost(**pick(StepCost)),
            meta=PerfMeta(**data["meta"]),
            node=node,
            **{k: data.get(k) for k in (*cls._EXTRAS, "aura_profile")},
        )
