"""The approximate-information-state (AIS) value-loss bound, instantiated for AURA-Mem.

An AIS (Subramanian et al., JMLR 2022) is a compression z_t = sigma(history_t) that predicts
(i) the reward and (ii) the next observation almost as well as the full history. If, for
every history and action,

    |E[r | h, a] - r_hat(z, a)|                  <= eps     (reward-prediction error)
    TV(P(o' | h, a), P_hat(o' | z, a))           <= delta   (next-observation error)

then acting optimally on z loses at most

    V*(h) - V_z(h)  <=  2 (eps + gamma * delta * span(V)) / (1 - gamma)

(total variation in [0, 1]; |E_P f - E_Q f| <= span(f) TV(P, Q)). Here z_t is what the
policy acts on: the AURA memory state after step t (W, m: 1,056 floats) plus the frozen
backbone's features of the current view. Predictors r_hat and P_hat are small MLPs fitted on
closed-loop AURA rollouts and scored on held-out rollouts (disjoint seeds). Observations are
the symbolic 7x7 view + heading, coded as classes (MiniGrid is deterministic given the full
history, so P(o' | h, a) is a point mass and TV = 1 - P_hat(true o')).

Rewards lie in [0, 1], so values do too: any bound >= 1 is vacuous, and with gamma close
to 1 the 1/(1 - gamma) factor makes that the expected outcome. We report it as measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from aura_mem_ros.core.aura import AuraLayer


@dataclass(frozen=True)
class AISResult:
    gamma: float
    eps_max: float
    eps_mean: float
    delta_max: float
    delta_mean: float
    value_span: float
    bound_worst_case: float
    bound_average_case: float
    measured_value_gap: float
    expert_return: float
    policy_return: float
    n_fit_steps: int
    n_test_steps: int

    @property
    def vacuous(self) -> bool:
        return self.bound_worst_case >= self.value_span


def value_loss_bound(eps: float, delta: float, gamma: float, span: float) -> float:
    return 2.0 * (eps + gamma * delta * span) / (1.0 - gamma)


@dataclass
class Transitions:
    z: list[np.ndarray]
    action: list[int]
    reward: list[float]
    next_obs: list[bytes]


def collect_transitions(
    layer: AuraLayer, env_id: str, seeds: list[int], max_steps: int
) -> tuple[Transitions, list[float], list[float]]:
    """Roll out the gated policy; record (z_t, a_t, r_{t+1}, o_{t+1}) and episode returns."""
    from aura_mem_dev.agent import sim_to_observation
    from aura_mem_ros.backbones.mini import MiniBackbone
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.env import cue_visible, make_env, to_sim_obs
    from aura_mem_ros.sim.expert import expert_action

    backbone = MiniBackbone()
    runtime = AuraRuntime(layer)
    env = make_env(env_id)
    tr = Transitions([], [], [], [])
    returns, expert_returns = [], []
    for seed in seeds:
        obs_dict, _ = env.reset(seed=seed)
        runtime.reset()
        total = 0.0
        for _ in range(max_steps):
            out = backbone.step(sim_to_observation(to_sim_obs(obs_dict)))
            step = runtime.select_action(out.features, out.action)
            action = int(np.argmax(step.action))
            # The 4,224-byte state as the node would persist it: W row-major, then m.
            state = np.frombuffer(runtime.state_bytes(), dtype="<f4")
            tr.z.append(np.concatenate([state, out.features]).astype(np.float32))
            tr.action.append(action)
            obs_dict, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            tr.reward.append(float(reward))
            grid, vis = env.unwrapped.gen_obs_grid()
            code = grid.encode(vis)[:, :, :2].tobytes() + bytes([int(obs_dict["direction"])])
            tr.next_obs.append(code + bytes([int(terminated or truncated)]))
            if terminated or truncated:
                break
        returns.append(total)
        # The full-history optimum for the same layout: the oracle's return.
        env.reset(seed=seed)
        seen, total = cue_visible(env), 0.0
        for _ in range(max_steps):
            _, reward, terminated, truncated, _ = env.step(expert_action(env, seen))
            seen = seen or cue_visible(env)
            total += float(reward)
            if terminated or truncated:
                break
        expert_returns.append(total)
    return tr, returns, expert_returns


class _Predictor(nn.Module):
    def __init__(self, d_in: int, n_actions: int, n_out: int, hidden: int = 128) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.net = nn.Sequential(
            nn.Linear(d_in + n_actions, hidden), nn.GELU(), nn.Linear(hidden, n_out)
        )

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, nn.functional.one_hot(a, self.n_actions).float()], -1))


def _fit(
    model: nn.Module,
    z: torch.Tensor,
    a: torch.Tensor,
    y: torch.Tensor,
    loss_fn,
    steps: int,
    seed: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(len(z), (min(256, len(z)),), generator=gen)
        loss = loss_fn(model(z[idx], a[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def ais_bound(
    layer: AuraLayer,
    env_id: str,
    fit_seeds: list[int],
    test_seeds: list[int],
    max_steps: int = 100,
    gamma: float = 0.99,
    fit_steps: int = 1500,
) -> AISResult:
    torch.manual_seed(0)
    fit, _, _ = collect_transitions(layer, env_id, fit_seeds, max_steps)
    test, returns, expert_returns = collect_transitions(layer, env_id, test_seeds, max_steps)
    # Standardise z with the fit statistics: the memory and the features have other scales.
    z_fit = torch.from_numpy(np.stack(fit.z))
    mu, sd = z_fit.mean(0), z_fit.std(0) + 1e-6
    z_fit = (z_fit - mu) / sd
    z_test = (torch.from_numpy(np.stack(test.z)) - mu) / sd
    a_fit, a_test = torch.tensor(fit.action), torch.tensor(test.action)
    n_actions = 7
    reward_model = _Predictor(z_fit.shape[1], n_actions, 1)
    _fit(
        reward_model,
        z_fit,
        a_fit,
        torch.tensor(fit.reward)[:, None],
        nn.functional.mse_loss,
        fit_steps,
        1,
    )
    codes = {c: i for i, c in enumerate(sorted(set(fit.next_obs)))}
    unknown = len(codes)  # next observations never seen in the fit rollouts
    y_fit = torch.tensor([codes[c] for c in fit.next_obs])
    y_test = torch.tensor([codes.get(c, unknown) for c in test.next_obs])
    obs_model = _Predictor(z_fit.shape[1], n_actions, unknown + 1)
    _fit(obs_model, z_fit, a_fit, y_fit, nn.functional.cross_entropy, fit_steps, 2)
    with torch.no_grad():
        r_err = (reward_model(z_test, a_test)[:, 0] - torch.tensor(test.reward)).abs()
        p_true = obs_model(z_test, a_test).softmax(-1).gather(1, y_test[:, None])[:, 0]
        tv = 1.0 - p_true
    span = 1.0  # returns lie in [0, 1]
    eps_max, eps_mean = float(r_err.max()), float(r_err.mean())
    delta_max, delta_mean = float(tv.max()), float(tv.mean())
    return AISResult(
        gamma=gamma,
        eps_max=eps_max,
        eps_mean=eps_mean,
        delta_max=delta_max,
        delta_mean=delta_mean,
        value_span=span,
        bound_worst_case=value_loss_bound(eps_max, delta_max, gamma, span),
        bound_average_case=value_loss_bound(eps_mean, delta_mean, gamma, span),
        measured_value_gap=float(np.mean(expert_returns) - np.mean(returns)),
        expert_return=float(np.mean(expert_returns)),
        policy_return=float(np.mean(returns)),
        n_fit_steps=len(fit.z),
        n_test_steps=len(test.z),
    )
