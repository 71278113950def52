"""Ray RLlib (new API stack): env runners that each step one OsimVectorEnv, on a
two-node Ray cluster started on this machine; fault tolerance (a killed pool worker,
a killed env runner); ``fastenv train --backend rllib`` with resume and evaluate.

The cluster tests are marked ``cluster`` (about 100 s together, with Ray's start-up):
the default ``pytest`` leaves them out, to stay within its time budget, and ``.ci/run``
runs them in a second step (``pytest -m cluster``).

Everything runs tiny (2 envs per runner, 32-step rollouts, a 32x32 network) on one
cluster shared by the module: the head node has 2 CPUs, the second node 1, and each
node one ``runner_slot``, which the multi-node algorithm's runners claim, so that one
runner lands on each node and a CPU is left on the head for the CLI's run."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.rllib")
pytest.importorskip("stable_baselines3")

from fastenv.adapters.rllib import (  # noqa: E402
    GENERATION_STRIDE,
    algorithm_config,
    env_runner_report,
    vector_env,
)
from fastenv.train import load_config  # noqa: E402

TASK = "TorqueLockedKneeImitation2D-v0"   # the fastest task: 5 PD torques
TINY = """
[algo]
n_steps = 32
batch_size = 64
n_epochs = 1
[policy]
net_arch = [32, 32]
[run]
checkpoint_every = 128
log_every = 128
eval_episodes = 1
eval_seconds = 0.2
"""


def tiny_config():
    cfg = load_config("ppo")
    cfg["algo"].update(n_steps=32, batch_size=64, n_epochs=1)
    cfg["policy"]["net_arch"] = [32, 32]
    return cfg


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=2, resources={"runner_slot": 1}, include_dashboard=False))
    c.add_node(num_cpus=1, resources={"runner_slot": 1})
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def algo(cluster):
    cfg = tiny_config()
    config = algorithm_config("ppo", TASK, cfg, num_env_runners=2, envs_per_runner=2,
                              num_workers=1, seed=0, env_options=dict(cfg["task"]))
    config.env_runners(custom_resources_per_env_runner={"runner_slot": 1})
    algorithm = config.build_algo()
    yield algorithm
    algorithm.stop()


def reports(algorithm):
    return algorithm.env_runner_group.foreach_env_runner(env_runner_report,
                                                         local_env_runner=False)


@pytest.mark.cluster
def test_env_runner_env_is_one_osim_vector_env_in_next_step_mode(monkeypatch):
    from collections import Counter

    from gymnasium.vector import AutoresetMode

    from fastenv.adapters import rllib
    from fastenv.vector import OsimVectorEnv
    monkeypatch.setattr(rllib, "_SEED_GENERATIONS", Counter())
    env = vector_env(dict(task=TASK, num_envs=2, num_workers=1))
    try:
        assert isinstance(env.unwrapped, OsimVectorEnv) and env.num_envs == 2
        assert env.unwrapped.autoreset_mode == AutoresetMode.NEXT_STEP
        env.reset(seed=3)   # runner seed 3: env seeds 6 and 7, disjoint from seed 2's 4, 5
        assert env.unwrapped.get_attr("np_random_seed") == (6, 7)
        env.reset(seed=3)   # the same env, the same seed: the same block
        assert env.unwrapped.get_attr("np_random_seed") == (6, 7)
    finally:
        env.close()
    # a rebuilt env reset with the runner's seed: the next generation's block, named
    rebuilt = vector_env(dict(task=TASK, num_envs=2, num_workers=1))
    try:
        with pytest.warns(UserWarning, match="runner seed 3 .*start at 8589934598"):
            rebuilt.reset(seed=3)
        assert rebuilt.unwrapped.get_attr("np_random_seed") == (8589934598, 8589934599)
    finally:
        rebuilt.close()
    with pytest.raises(ValueError, match="autoreset_mode='NextStep'.*SameStep"):
        vector_env(dict(task=TASK, num_envs=2, autoreset_mode="SameStep"))
    # any spelling of NextStep is NextStep; a bad one, and views of shared memory (RLlib
    # keeps the observations a step returns), are one line before any worker starts
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        vector_env(dict(task=TASK, num_envs=2, autoreset_mode="bogus"))
    with pytest.raises(ValueError, match="copy=False: RLlib's env runner stores the arrays"):
        vector_env(dict(task=TASK, num_envs=2, copy=False))
    env = vector_env(dict(task=TASK, num_envs=1, autoreset_mode="next_step"))
    env.close()
    with pytest.raises(ValueError, match="needs 'task'"):
        vector_env(dict(num_envs=2))


@pytest.mark.cluster
def test_seed_generations_are_counted_over_processes(cluster, monkeypatch):
    """A runner Ray restarts is a new process: the run's counter (an actor of the
    driver), not the process's, gives its env the next generation's seed block."""
    from collections import Counter

    from fastenv.adapters import rllib
    counter = rllib.start_seed_generations()
    assert counter is not None
    blocks = []
    for _ in range(2):
        monkeypatch.setattr(rllib, "_SEED_GENERATIONS", Counter())   # as in a new process
        env = vector_env(dict(task=TASK, num_envs=2, num_workers=1, seed_generations=counter))
        try:
            env.reset(seed=5)
            blocks.append(env.unwrapped.get_attr("np_random_seed"))
        finally:
            env.close()
    assert blocks == [(10, 11), ((5 + rllib.GENERATION_STRIDE) * 2,
                                 (5 + rllib.GENERATION_STRIDE) * 2 + 1)]
    # another run of the same driver: the same actor (one process, not one per run),
    # its own count
    other = rllib.start_seed_generations()
    assert other != counter and other.split("/")[0] == counter.split("/")[0]
    env = vector_env(dict(task=TASK, num_envs=2, num_workers=1, seed_generations=other))
    try:
        env.reset(seed=5)
        assert env.unwrapped.get_attr("np_random_seed") == (10, 11)
    finally:
        env.close()


@pytest.mark.cluster
def test_ppo_samples_from_env_runners_on_both_nodes(cluster, algo):
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    for _ in range(2):
        result = algo.train()
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 2 * 128
    rs = reports(algo)
    assert {r["node_id"] for r in rs} == nodes           # one runner on each node
    assert all(r["env_steps"] >= 2 * 64 and r["num_envs"] == 2 for r in rs)
    assert all(len(r["worker_pids"]) == 1 for r in rs)   # one pool worker each


@pytest.mark.cluster
def test_killed_pool_worker_inside_env_runner_is_respawned(algo):
    before = reports(algo)
    victim = before[0]["worker_pids"][0]
    os.kill(victim, signal.SIGKILL)
    algo.train()
    after = {r["pid"]: r for r in reports(algo)}
    runner = after[before[0]["pid"]]                    # the same runner process
    assert runner["restarts"] == before[0]["restarts"] + 1
    assert victim not in runner["worker_pids"]
    assert runner["env_steps"] > before[0]["env_steps"]


@pytest.mark.cluster
def test_killed_env_runner_is_restarted_by_rllib(algo):
    before = reports(algo)
    victim = before[1]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        algo.train()                                     # goes on with the other runner
        if algo.env_runner_group.num_healthy_remote_workers() == 2:
            break
    assert algo.env_runner_group.num_healthy_remote_workers() == 2
    algo.train()
    after = reports(algo)
    assert len(after) == 2 and victim["pid"] not in {r["pid"] for r in after}
    replaced = next(r for r in after if r["pid"] != before[0]["pid"])
    assert replaced["env_steps"] > 0 and replaced["node_id"] == victim["node_id"]
    # a new process, yet not the victim's seed block again: the run's counter says so
    assert replaced["seed_block"] not in {victim["seed_block"], before[0]["seed_block"]}
    assert replaced["seed_block"] % GENERATION_STRIDE == victim["seed_block"]
    time.sleep(0.5)   # the dead runner's pool workers die with it (parent-death signal)
    assert not any(os.path.exists(f"/proc/{p}") and
                   "Z" not in open(f"/proc/{p}/stat").read().split()[2]
                   for p in victim["worker_pids"])


@pytest.mark.cluster
def test_fastenv_train_rllib_resume_and_evaluate(cluster, tmp_path):
    from fastenv import evaluate as ev
    from fastenv.__main__ import main
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "run"
    # a second driver joins the running cluster with --address, as on a real cluster
    args = ["train", TASK, "--backend", "rllib", "--algo", "ppo", "--steps", "128",
            "--num-env-runners", "1", "--envs-per-runner", "2", "--num-workers", "1",
            "--config", str(tmp_path / "tiny.toml"), "--out", str(out), "--no-progress",
            "--address", cluster.address]
    r = subprocess.run([sys.executable, "-m", "fastenv", *args], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == "rllib" and config["num_envs"] == 2
    assert config["config"]["algo"]["n_steps"] == 32
    latest = out / "checkpoints" / "latest"
    assert json.loads((latest / "state.json").read_text())["env_steps"] == 128
    policy, _ = ev.load_policy(out)   # deterministic: the same action for the same obs
    obs = np.random.default_rng(0).normal(size=policy.observation_space.shape)
    action = policy(obs.astype(np.float32))
    assert action.shape == (5,) and np.array_equal(action, policy(obs.astype(np.float32)))
    assert policy.action_space.contains(action)
    assert main(["train", "--resume", "--steps", "256", "--out", str(out),
                 "--no-progress"]) == 0
    rows = (out / "progress.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["128", "256"]
    assert (out / "checkpoints" / "000000256").is_dir()
    # each checkpoint's policy evaluated once (the final save is the 256 checkpoint)
    evaluations = (out / "evaluations.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in evaluations[1:]] == ["128", "256"]
    result = ev.evaluate(out, episodes=1, seconds=0.2, random_baseline=False)
    assert result["algo"] == "ppo" and result["mean"]["time_alive_s"] > 0
    with pytest.raises(FileExistsError):
        from fastenv.train_rllib import train
        train(TASK, out=out)


def _module_weights(run):
    from ray.rllib.core.rl_module.rl_module import RLModule
    folder = (run / "checkpoints" / "latest" / "learner_group" / "learner" / "rl_module"
              / "default_policy").resolve()
    return RLModule.from_checkpoint(folder).get_state()


def _filter_count(run) -> int:
    import pickle
    path = run / "checkpoints" / "latest" / "env_runner" / "env_to_module_connector" \
        / "MeanStdFilter" / "state.pkl"
    with open(path, "rb") as f:
        (state,) = pickle.load(f).values()
    return int(state["running_stats"][0]["num_pushes"])


@pytest.mark.cluster
def test_init_from_starts_a_new_run_from_another_rllib_run(cluster, tmp_path, capsys):
    from fastenv.__main__ import main
    from fastenv.train_rllib import train
    (tmp_path / "tiny.toml").write_text(TINY)
    source = train(TASK, "ppo", 128, num_env_runners=1, envs_per_runner=2, num_workers=1,
                   out=tmp_path / "source", config=tmp_path / "tiny.toml", show_bar=False)
    # a zero learning rate: the new run's saved module is the source's, tensor for tensor
    (tmp_path / "frozen.toml").write_text("[algo]\nlearning_rate = 0.0\n")
    fine = train(None, None, 128, num_workers=1, seed=5, out=tmp_path / "fine",
                 config=tmp_path / "frozen.toml", init_from=source, show_bar=False,
                 apply_perturbations=True)
    saved = json.loads((fine / "config.json").read_text())
    assert saved["algo"] == "ppo" and saved["task"] == TASK and saved["seed"] == 5
    assert (saved["num_env_runners"], saved["envs_per_runner"]) == (1, 2)   # the source's
    assert saved["config"]["policy"]["net_arch"] == [32, 32]   # the source's config ...
    assert saved["config"]["algo"]["learning_rate"] == 0.0     # ... with the given one over it
    assert saved["env_options"]["apply_perturbations"] is True
    assert saved["init_from"]["run"] == str(source.resolve())
    assert saved["init_from"]["env_steps"] == 128
    assert json.loads((fine / "checkpoints" / "latest" / "state.json").read_text()
                      )["env_steps"] == 128   # its own steps, from 0
    trained, now = _module_weights(source), _module_weights(fine)
    assert trained.keys() == now.keys() and len(now) >= 6
    for name, value in trained.items():
        np.testing.assert_array_equal(np.asarray(now[name]), np.asarray(value), err_msg=name)
    # the observation statistics went on from the source's count
    assert _filter_count(fine) >= _filter_count(source) + 128
    # what cannot carry over: one line each, no folder left
    sb3 = tmp_path / "sb3"
    sb3.mkdir()
    (sb3 / "config.json").write_text(json.dumps(dict(task=TASK, algo="ppo", seed=0,
                                                     env_options={}, config={})))
    bad = [(["--init-from", str(source), "--algo", "sac"], "its policy is ppo's"),
           (["--init-from", str(source), "--init-checkpoint", "64"],
            "no checkpoint at 64 env steps"),
           (["--init-from", str(sb3), "--backend", "rllib"], "a sb3 run"),
           (["MuscleWalkingImitation2D-v0", "--init-from", str(source), "--steps", "64"],
            "observation_space has shape")]
    for i, (args, message) in enumerate(bad):
        out = tmp_path / f"bad{i}"
        assert main(["train", *args, "--out", str(out), "--no-progress",
                     "--address", cluster.address, "--num-workers", "1"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
        assert not out.exists(), args


def test_config_maps_sb3_names_to_rllib_and_rejects_unknown_keys():
    cfg = load_config("ppo")
    c = algorithm_config("ppo", TASK, cfg, num_env_runners=3, envs_per_runner=4,
                         num_workers=2, seed=1, env_options={})
    assert (c.lr, c.minibatch_size, c.num_epochs, c.lambda_, c.clip_param, c.grad_clip) == \
        (3e-4, 256, 10, 0.95, 0.2, 0.5)
    assert c.train_batch_size_per_learner == 512 * 3 * 4 and c.rollout_fragment_length == 512
    assert (c.num_env_runners, c.num_envs_per_env_runner, c.num_cpus_per_env_runner) == (3, 4, 2)
    assert c.gym_env_vectorize_mode == "vector_entry_point" and c.restart_failed_env_runners
    assert c.env_config["num_workers"] == 2 and c.env_config["task"] == TASK
    sac = algorithm_config("sac", TASK, load_config("sac"), num_env_runners=1,
                           envs_per_runner=4, num_workers=2, seed=0, env_options={})
    assert (sac.actor_lr, sac.critic_lr, sac.num_steps_sampled_before_learning_starts) == \
        (3e-4, 3e-4, 10_000)
    assert sac.replay_buffer_config["capacity"] == 300_000
    assert sac.training_intensity == 256 / 4   # SB3: 1 update of 256 per vector step
    assert c.restart_failed_sub_environments
    cfg["algo"]["not_an_option"] = 1
    with pytest.raises(ValueError, match="not_an_option.*n_steps"):   # all SB3 names named
        algorithm_config("ppo", TASK, cfg, num_env_runners=1, envs_per_runner=1,
                         num_workers=1, seed=0, env_options={})
    with pytest.raises(ValueError, match="'n_epochs'.*buffer_size.*train_freq"):
        algorithm_config("sac", TASK, load_config("sac") | {"algo": {"n_epochs": 3}},
                         num_env_runners=1, envs_per_runner=1, num_workers=1, seed=0,
                         env_options={})


def test_env_runner_episodes_match_the_env_and_survive_a_step_error():
    """RLlib's own runner on our vector env, without Ray: NextStep autoresets give
    episodes of exactly episode_seconds (residual PD targets, so nothing falls), and a
    step that raises (a NaN action) rebuilds the env instead of leaving a runner that
    fails every later sample."""
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
    cfg = tiny_config()
    config = algorithm_config("ppo", TASK, cfg, num_env_runners=1, envs_per_runner=2,
                              num_workers=1, seed=0,
                              env_options=dict(cfg["task"], episode_seconds=0.1))
    runner = SingleAgentEnvRunner(config=config)
    try:
        episodes = runner.sample(num_timesteps=50)
        done = [e for e in episodes if e.is_done]
        assert len(done) == 4 and all(len(e) == 10 and e.is_truncated for e in done)
        assert runner.get_metrics()["episode_len_mean"].peek() == 10
        venv = runner.env.unwrapped

        def diverged(actions):
            raise ValueError("env 0 has non-finite values")
        venv.step = diverged
        first_seeds = venv.get_attr("np_random_seed")
        runner.sample(num_timesteps=10)
        assert runner.env.unwrapped is not venv
        # the rebuilt env does not replay the first one's start states
        assert not set(runner.env.unwrapped.get_attr("np_random_seed")) & set(first_seeds)
        assert sum(len(e) for e in runner.sample(num_timesteps=10)) >= 10
    finally:
        runner.stop()


def test_checkpoint_policy_scales_observations_as_rllib(tmp_path):
    """evaluate normalises with RLlib's MeanStdFilter (its epsilon, 1e-6): an element
    that was constant in training and is off by 1e-7 now scales to 0.1, not to the clip."""
    import pickle

    import gymnasium as gym
    import torch
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.utils.filter import MeanStdFilter

    from fastenv.adapters.rllib import checkpoint_policy
    torch.manual_seed(0)
    module = DefaultPPOTorchRLModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        model_config=dict(fcnet_hiddens=[8]), inference_only=True)
    module.save_to_path(tmp_path / "learner_group/learner/rl_module/default_policy")
    trained = MeanStdFilter((3,))
    for x in ([1.0, 0.0, 2.0], [1.0, 1.0, 0.0], [1.0, 2.0, 1.0]):   # element 0: constant
        trained(np.float32(x))
    state = dict(shape=np.array([3]), de_mean_to_zero=True, de_std_to_one=True,
                 clip_by_value=10.0, running_stats=[trained.running_stats.to_state()])
    connector = tmp_path / "env_runner/env_to_module_connector/MeanStdFilter"
    connector.mkdir(parents=True)
    (connector / "state.pkl").write_bytes(pickle.dumps({None: state}))
    obs = np.float32([1.0 + 2.4e-7, 0.5, 1.5])
    x = trained(obs, update=False)
    assert abs(x[0]) < 1
    with torch.no_grad():
        logits = module.forward_inference({"obs": torch.from_numpy(x[None])})
    expected = logits["action_dist_inputs"][0, :2].numpy()   # the mean: the mode
    assert np.allclose(checkpoint_policy(tmp_path)(obs), np.clip(expected, -1, 1), atol=1e-6)


def test_bad_address_is_one_line_before_ray_starts(tmp_path, capsys):
    from fastenv.__main__ import main
    for address, expected in (("bogus", "expected auto or HOST:PORT"),
                              ("127.0.0.1:1", "no Ray cluster answers there")):
        assert main(["train", TASK, "--backend", "rllib", "--address", address,
                     "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"--address {address}: {expected}" in err
    assert not (tmp_path / "r").exists()


def test_bad_algo_key_is_refused_before_ray_starts(tmp_path, monkeypatch):
    import ray

    from fastenv.train_rllib import train
    (tmp_path / "bad.toml").write_text("[algo]\nnot_an_option = 1\n")
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ValueError, match="not_an_option"):
        train(TASK, "ppo", 64, out=tmp_path / "r", config=tmp_path / "bad.toml",
              show_bar=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.cluster
def test_env_runners_beyond_the_cluster_cpus_are_refused(cluster, tmp_path):
    """Ray would wait forever for CPUs the cluster does not have (3 here)."""
    from fastenv.train_rllib import train
    with pytest.raises(ValueError, match="4 x --num-workers 1 = 4 CPUs.*has 3"):
        train(TASK, "ppo", 64, num_env_runners=4, envs_per_runner=1, num_workers=1,
              out=tmp_path / "r", show_bar=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_sac_trains_and_evaluates(cluster, tmp_path):
    from fastenv import evaluate as ev
    from fastenv.train_rllib import train
    (tmp_path / "sac.toml").write_text(
        "[algo]\nlearning_starts = 64\nbatch_size = 32\nbuffer_size = 10_000\n"
        "[policy]\nnet_arch = [32, 32]\n"
        "[run]\ncheckpoint_every = 200\nlog_every = 100\neval_episodes = 1\neval_seconds = 0.2\n")
    out = train(TASK, "sac", 200, num_env_runners=1, envs_per_runner=2, num_workers=1,
                out=tmp_path / "sac", config=tmp_path / "sac.toml", show_bar=False)
    assert (out / "checkpoints" / "latest" / "state.json").is_file()
    assert ev.evaluate(out, episodes=1, seconds=0.2, random_baseline=False)["algo"] == "sac"


def test_bad_rllib_cli_input_is_one_line(tmp_path, capsys):
    from fastenv.__main__ import main
    assert main(["train", TASK, "--backend", "rllib", "--num-envs", "4",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--num-envs 4" in err and "--envs-per-runner" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint(cluster, tmp_path):
    (tmp_path / "c.toml").write_text(TINY.replace("log_every = 128", "log_every = 64"))
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastenv", "train", TASK, "--backend", "rllib", "--algo", "ppo",
         "--steps", "1000000", "--num-env-runners", "1", "--envs-per-runner", "2",
         "--num-workers", "1", "--config", str(tmp_path / "c.toml"), "--out", str(out),
         "--no-progress", "--address", cluster.address],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (
                (out / "progress.csv").is_file()
                and len((out / "progress.csv").read_text().splitlines()) >= 2):
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 130
    finally:
        proc.kill()
    state = json.loads((out / "checkpoints" / "latest" / "state.json").read_text())
    assert state["env_steps"] >= 64
