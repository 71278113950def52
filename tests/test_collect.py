"""The pipelined collector: each env's transitions equal those of stepping it alone with
the same seed and policy, whatever the batching; rollouts continue episodes."""
import numpy as np
import pytest

from fastenv.collect import PipelinedCollector
from fastenv.env import ImitationEnv
from fastenv.errors import PendingCallError
from fastenv.vector import OsimVectorEnv

# Extreme PD targets make the model fall after about 0.3 s, and episodes end at 0.3 s:
# two short rollouts cross episode ends of both kinds.
TASK, KW = "TorqueWalkingImitation2D-v0", dict(kp=20.0, kd=2.0, episode_seconds=0.3)
N, SEED, STEPS = 4, 100, (30, 20)


def policy(obs):
    """Deterministic, row by row, with +, * and floor only: bitwise the same whatever
    rows it sees together (a matmul's rounding may depend on the batch size)."""
    x = obs[:, :7].astype(np.float64) * 997.0
    return (6.0 * (x - np.floor(x)) - 3.0).astype(np.float32)   # mostly clipped


def policy_with_extras(obs):
    return policy(obs), {"value": obs[:, 0].astype(np.float64) * 2.0,
                         "pair": np.stack([obs[:, 1], obs[:, 2]], axis=1)}


def single_env(i, steps):
    """Env i stepped alone, step by step, with SameStep autoreset: the reference."""
    env = ImitationEnv(TASK, **KW)
    obs, _ = env.reset(seed=SEED + i)
    out = []
    for _ in range(steps):
        a = policy(obs[None])[0]
        nxt, r, te, tr, _ = env.step(a)
        final = None
        if te or tr:
            final, (nxt, _) = nxt, env.reset()
        out.append((obs, a, r, te, tr, final))
        obs = nxt
    env.close()
    return out, obs


@pytest.fixture(scope="module")
def expected():
    return [single_env(i, sum(STEPS)) for i in range(N)]


@pytest.mark.parametrize("workers, batch_size, start", [(2, 2, False), (2, 1, False),
                                                        (1, 4, False), (2, None, True)])
def test_transitions_equal_single_envs(expected, workers, batch_size, start):
    """Pipelined (batch_size < num_envs) and lock-step (batch_size = num_envs) collection
    over two rollouts give every env exactly its single-env transitions, in order; also
    from envs the caller reset itself (``start``)."""
    venv = OsimVectorEnv(TASK, N, num_workers=workers, autoreset_mode="SameStep",
                         batch_size=batch_size or N, **KW)
    try:
        collector = PipelinedCollector(venv, policy, seed=None if start else SEED,
                                       batch_size=2 if start else None)
        if start:
            collector.start(venv.reset(seed=SEED)[0])
        rollouts = [collector.collect(s) for s in STEPS]
    finally:
        venv.close()
    ends = {"terminated": 0, "truncated": 0}
    for i in range(N):
        steps, last = expected[i]
        for k, (obs, a, rew, te, tr, final) in enumerate(steps):
            r, kk = (rollouts[0], k) if k < STEPS[0] else (rollouts[1], k - STEPS[0])
            np.testing.assert_array_equal(r.obs[i, kk], obs, err_msg=f"env {i} step {k}")
            np.testing.assert_array_equal(r.actions[i, kk], a)
            assert (r.rewards[i, kk], r.terminated[i, kk], r.truncated[i, kk]) == (rew, te, tr)
            if final is None:
                assert not r.final_obs[i, kk].any()
            else:
                np.testing.assert_array_equal(r.final_obs[i, kk], final)
                ends["terminated" if te else "truncated"] += 1
        np.testing.assert_array_equal(rollouts[1].last_obs[i], last)
        np.testing.assert_array_equal(rollouts[0].last_obs[i], rollouts[1].obs[i, 0])
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


def test_rollout_extras_next_obs_and_episodes():
    venv = OsimVectorEnv(TASK, 3, num_workers=2, batch_size=2, autoreset_mode="SameStep",
                         **KW)
    try:
        collector = PipelinedCollector(venv, policy_with_extras, seed=0)
        r = collector.collect(40)   # longer than an episode: every env ends one
        assert r.extras["value"].shape == (3, 40) and r.extras["value"].dtype == np.float64
        assert r.extras["pair"].shape == (3, 40, 2)
        np.testing.assert_array_equal(r.extras["value"], r.obs[..., 0].astype(np.float64) * 2)
        nxt = r.next_obs
        ended = r.dones
        np.testing.assert_array_equal(nxt[ended], r.final_obs[ended])
        np.testing.assert_array_equal(nxt[:, :-1][~ended[:, :-1]], r.obs[:, 1:][~ended[:, :-1]])
        # every episode that ended was counted, from its first step
        assert len(r.episode_returns) == ended.sum() == len(r.episode_envs)
        for i in range(3):
            ends = np.flatnonzero(ended[i])
            mine = [length for env, length in zip(r.episode_envs, r.episode_lengths) if env == i]
            assert mine == np.diff(np.concatenate([[-1], ends])).tolist()
            first = r.episode_returns[r.episode_envs.index(i)]
            assert first == pytest.approx(r.rewards[i, :ends[0] + 1].sum())
        # a new seed restarts every episode: the same first observations as a fresh reset
        collector.reset(seed=0)
        np.testing.assert_array_equal(collector.collect(1).obs[:, 0], r.obs[:, 0])
    finally:
        venv.close()


def test_bad_collector_input():
    venv = OsimVectorEnv(TASK, 2, num_workers=1, batch_size=1, **KW)   # NextStep
    try:
        with pytest.raises(ValueError, match="SameStep"):
            PipelinedCollector(venv, policy)
        with pytest.raises(TypeError, match="OsimVectorEnv"):
            PipelinedCollector(object(), policy)
        with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, num_envs=2\]"):
            venv.recv(batch_size=3)
        with pytest.raises(PendingCallError, match="batch_size=1"):
            venv.recv(batch_size=1)
    finally:
        venv.close()
    venv = OsimVectorEnv(TASK, 2, num_workers=1, batch_size=1, autoreset_mode="SameStep", **KW)
    try:
        with pytest.raises(TypeError, match="callable"):
            PipelinedCollector(venv, None)
        with pytest.raises(ValueError, match="steps must be an int >= 1"):
            PipelinedCollector(venv, policy).collect(0)
        with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, num_envs=2\]"):
            PipelinedCollector(venv, policy, batch_size=0)
        with pytest.raises(ValueError, match=r"obs has shape \(3,\); expected \(2, 98\)"):
            PipelinedCollector(venv, policy).start(np.zeros(3))
        bad = PipelinedCollector(venv, lambda obs: np.zeros(7, np.float32), seed=0)
        with pytest.raises(ValueError, match=r"shape \(7,\) for 1 observations; expected \(1, 7\)"):
            bad.collect(3)
        # an interrupted collect leaves no env in flight for the next one
        bad.policy = policy
        assert bad.collect(3).obs.shape == (2, 3, venv.single_observation_space.shape[0])
    finally:
        venv.close()


@pytest.mark.slow   # ~18 s: four modes start their own envs
def test_closed_loop_benchmark_steps_the_same_work_in_every_mode(tmp_path):
    """bench/closed_loop.py --quick: every mode steps each env the same number of times
    through the same action schedule (the figures of a quick run mean nothing)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "closed_loop.py"
    subprocess.run([sys.executable, str(script), "--quick", "--modes",
                    "sync_random,sync_policy,async_random,pipelined_policy",
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "closed_loop.json").read_text())
    counts = {row["mode"]: row["env_steps_min_max"] for row in result["rows"]}
    assert counts["sync_random"] == counts["sync_policy"] == counts["pipelined_policy"]
    assert counts["sync_random"][0] == counts["sync_random"][1] == 2 + 16
    # send/recv steps whichever envs are ready: each follows its own schedule, the
    # quicker ones further along (the same number of samples in all)
    assert 0 < counts["async_random"][0] <= 18 <= counts["async_random"][1]
    assert result["actions"] == "schedule" and (tmp_path / "closed_loop.md").is_file()
