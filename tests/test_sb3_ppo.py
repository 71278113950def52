"""PPO with pipelined rollouts: SB3's RolloutBuffer holds exactly the collected
transitions (actions, values and log-probabilities of the policy that acted, episode
starts, bootstrapped time limits), VecNormalize and VecMonitor keep working, and a run
saves, loads and continues; on CPU and, where one exists, on a CUDA device."""
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
import torch as th  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.vec_env import VecCheckNan, VecMonitor, VecNormalize  # noqa: E402

from fastenv.adapters.sb3 import make_vec_env  # noqa: E402
from fastenv.adapters.sb3_ppo import PipelinedPPO  # noqa: E402

TASK = "TorqueWalkingImitation2D-v0"
OPTIONS = dict(episode_seconds=0.1, num_workers=2)   # time limits every 10 steps
N, T = 4, 16
PPO_KW = dict(n_steps=T, batch_size=N * T, n_epochs=1, seed=0,
              policy_kwargs=dict(net_arch=[32, 32]))
# the policy's device: the rollout moves observations there and values back
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not th.cuda.is_available(), reason="needs a CUDA device"))]


class Record(BaseCallback):
    def __init__(self):
        super().__init__()
        self.steps, self.episodes, self.rollouts = 0, [], []

    def _on_step(self):
        self.steps += 1
        self.episodes += [info["episode"] for info in self.locals["infos"] if "episode" in info]
        return True

    def _on_rollout_end(self):
        self.rollouts.append(self.locals["rollout"])


@pytest.mark.parametrize("device", DEVICES)
def test_buffer_holds_the_collected_transitions(device):
    env = VecMonitor(make_vec_env(TASK, N, seed=0, **OPTIONS))
    try:
        model = PipelinedPPO("MlpPolicy", env, device=device, **PPO_KW)
        assert model.device.type == device
        _, callback = model._setup_learn(N * T, callback=Record())
        callback.on_training_start(locals(), globals())
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, T)
        r, buf = callback.rollouts[0], model.rollout_buffer
        assert callback.steps == T and model.num_timesteps == N * T
        assert len(callback.episodes) == r.dones.sum() > 0
        np.testing.assert_array_equal(buf.observations, r.obs.swapaxes(0, 1))
        space = env.action_space
        np.testing.assert_array_equal(np.clip(buf.actions, space.low, space.high),
                                      r.actions.swapaxes(0, 1))
        assert buf.episode_starts[0].all()
        np.testing.assert_array_equal(buf.episode_starts[1:], r.dones.swapaxes(0, 1)[:-1])
        # values and log-probabilities are those of the policy for the stored actions
        # (to rounding: a matmul's depends on how many rows it gets)
        values, log_prob, _ = model.policy.evaluate_actions(
            th.as_tensor(buf.observations.reshape(N * T, -1), device=model.device),
            th.as_tensor(buf.actions.reshape(N * T, -1), device=model.device))
        np.testing.assert_allclose(buf.values.reshape(-1),
                                   values.detach().cpu().numpy().ravel(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(buf.log_probs.reshape(-1), log_prob.detach().cpu().numpy(),
                                   rtol=1e-4, atol=1e-4)
        # time limits are bootstrapped with the value of the episode's last observation
        rewards = r.rewards.swapaxes(0, 1).astype(np.float32)
        limit = (r.truncated & ~r.terminated).swapaxes(0, 1)
        assert limit.any()
        np.testing.assert_array_equal(buf.rewards[~limit], rewards[~limit])
        final = th.as_tensor(r.final_obs.swapaxes(0, 1)[limit], device=model.device)
        expected = rewards[limit] + model.gamma * model.policy.predict_values(final).detach() \
            .cpu().numpy().ravel()
        np.testing.assert_allclose(buf.rewards[limit], expected, rtol=1e-4)  # float32 sums
        # the next rollout continues every env's episode where this one stopped
        np.testing.assert_array_equal(model._last_obs, r.last_obs)
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, T)
        np.testing.assert_array_equal(callback.rollouts[1].obs[:, 0], r.last_obs)
        np.testing.assert_array_equal(model.rollout_buffer.episode_starts[0], r.dones[:, -1])
    finally:
        env.close()


@pytest.mark.parametrize("device", DEVICES)
def test_learns_with_vecnormalize_saves_and_continues(tmp_path, device):
    env = VecNormalize(VecMonitor(make_vec_env(TASK, N, seed=0, **OPTIONS)))
    try:
        model = PipelinedPPO("MlpPolicy", env, pipeline_batch_size=1, device=device, **PPO_KW)
        record = Record()
        model.learn(2 * N * T, callback=record)
        assert model.num_timesteps == 2 * N * T and record.steps == 2 * T
        # statistics: the reset observations, then every observation the policy saw
        assert env.obs_rms.count == pytest.approx(1e-4 + N + 2 * N * T)
        assert env.ret_rms.count == pytest.approx(1e-4 + 2 * N * T)
        assert len(model.ep_info_buffer) == len(record.episodes) > 0
        model.save(tmp_path / "model.zip")
        env.save(str(tmp_path / "vecnormalize.pkl"))
        loaded = PipelinedPPO.load(tmp_path / "model.zip", env=env, device=device)
        assert loaded.pipeline_batch_size == 1
        loaded.learn(N * T, reset_num_timesteps=False)
        assert loaded.num_timesteps == 3 * N * T
    finally:
        env.close()


def test_refuses_what_it_cannot_pipeline():
    with pytest.raises(ValueError, match="use_sde"):
        PipelinedPPO("MlpPolicy", None, use_sde=True)
    # 0 was read as the default, and a bad size was named the collector's batch_size
    for size in (0, -1, 2.0):
        with pytest.raises(ValueError, match=f"pipeline_batch_size must be None .*got {size}"):
            PipelinedPPO("MlpPolicy", None, pipeline_batch_size=size)
    env = VecCheckNan(make_vec_env(TASK, 2, seed=0, **OPTIONS))
    try:
        model = PipelinedPPO("MlpPolicy", env, **dict(PPO_KW, batch_size=2 * T))
        with pytest.raises(ValueError, match="got VecCheckNan in the chain"):
            model.learn(2 * T)
        model = PipelinedPPO("MlpPolicy", env.venv, pipeline_batch_size=3,
                             **dict(PPO_KW, batch_size=2 * T))
        with pytest.raises(ValueError, match="pipeline_batch_size=3 is more than the env's 2"):
            model.learn(2 * T)
        # the collector keeps no infos to copy VecMonitor's info_keywords from
        model = PipelinedPPO("MlpPolicy", VecMonitor(env.venv, info_keywords=("total",)),
                             **dict(PPO_KW, batch_size=2 * T))
        with pytest.raises(ValueError, match=r"info_keywords \('total',\)"):
            model.learn(2 * T)
    finally:
        env.close()


def test_vecmonitor_file_and_count_get_every_episode(tmp_path):
    """The collector bypasses VecMonitor's step_wait: its monitor.csv stayed empty."""
    monitor = VecMonitor(make_vec_env(TASK, N, seed=0, **OPTIONS),
                         filename=str(tmp_path / "run"))
    try:
        model = PipelinedPPO("MlpPolicy", monitor, **PPO_KW)
        record = Record()
        model.learn(N * T, callback=record)
        monitor.close()
        rows = (tmp_path / "run.monitor.csv").read_text().splitlines()[2:]  # after the header
        assert len(rows) == monitor.episode_count == len(record.episodes) > 0
        assert [float(row.split(",")[0]) for row in rows] == \
            pytest.approx([e["r"] for e in record.episodes])
    finally:
        monitor.close()


def test_an_interrupted_rollout_leaves_the_env_usable():
    """Ctrl-C in the policy left envs in flight: reset(), evaluation and learn() all
    raised PendingCallError until the env was rebuilt."""
    env = VecNormalize(VecMonitor(make_vec_env(TASK, N, seed=0, **OPTIONS)))
    try:
        model = PipelinedPPO("MlpPolicy", env, **PPO_KW)
        act, calls = model._act, []

        def interrupted(raw):   # the policy, stopped in the middle of a rollout
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return act(raw)

        model._act = interrupted
        with pytest.raises(KeyboardInterrupt):
            model.learn(N * T)
        assert env.reset().shape == (N, env.observation_space.shape[0])
        model.learn(N * T)
        assert model.num_timesteps == N * T
    finally:
        env.close()
