"""The torch adapter: tensors that share the env's shared memory (checked by address),
copies on request, the same transitions as the NumPy env, final_obs as a dense batch,
tensor actions and env ids, and the pinned-memory CUDA path where CUDA exists."""
import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastenv.adapters.torch import TorchVectorEnv, make_vec  # noqa: E402
from fastenv.errors import ClosedEnvError  # noqa: E402
from fastenv.vector import OsimVectorEnv  # noqa: E402

# 0.05 s episodes: every env ends after 5 steps, so short runs cross episode ends
TASK, KW = "TorqueWalkingImitation2D-v0", dict(episode_seconds=0.05)
N = 3
CUDA = torch.cuda.is_available()


def actions(k, n=N):
    return np.random.default_rng(k).uniform(-1, 1, (n, 7)).astype(np.float32)


def shared(envs):
    """The env's shared-memory arrays (private: only to check addresses)."""
    return envs.unwrapped._a


def assert_same_infos(ours, ref):
    """Every info of the NumPy env, numeric ones as host tensors (final_obs aside)."""
    assert set(ours) == set(ref)
    for key, value in ref.items():
        if key == "final_obs":
            continue
        if isinstance(value, dict):
            assert_same_infos(ours[key], value)
        elif value.dtype == object:
            assert ours[key] is value
        else:
            assert isinstance(ours[key], torch.Tensor) and ours[key].device.type == "cpu"
            np.testing.assert_array_equal(ours[key].numpy(), value, err_msg=key)


def test_cpu_tensors_share_the_env_buffers():
    envs = make_vec(TASK, N, num_workers=1, **KW)
    try:
        a = shared(envs)
        obs, info = envs.reset(seed=0)
        assert obs.data_ptr() == a.obs.ctypes.data and obs.dtype == torch.float32
        obs, rew, term, trunc, info = envs.step(torch.from_numpy(actions(0)))
        assert obs.data_ptr() == a.obs.ctypes.data
        assert rew.data_ptr() == a.reward.ctypes.data and rew.dtype == torch.float64
        assert term.data_ptr() == a.terminated.ctypes.data and term.dtype == torch.bool
        assert trunc.data_ptr() == a.truncated.ctypes.data
        before = obs.clone()
        envs.step(actions(1))
        assert not torch.equal(obs, before)    # overwritten by the next step, as documented
    finally:
        envs.close()


def test_copy_true_returns_fresh_tensors():
    envs = make_vec(TASK, N, num_workers=1, copy=True, **KW)
    try:
        a = shared(envs)
        obs, _ = envs.reset(seed=0)
        assert obs.data_ptr() != a.obs.ctypes.data
        obs, rew, term, _, _ = envs.step(actions(0))
        kept = obs.clone()
        envs.step(actions(1))
        assert torch.equal(obs, kept)
        assert rew.data_ptr() != a.reward.ctypes.data
        assert term.data_ptr() != a.terminated.ctypes.data
    finally:
        envs.close()


class OnDevice(torch.Tensor):
    """Stands in for a CUDA tensor on a CPU-only machine: NumPy cannot read it, only
    ``.cpu()`` brings it to the host."""

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")


@pytest.mark.parametrize("mode", ["SameStep", "NextStep", "Disabled"])
def test_same_transitions_as_the_numpy_env(mode):
    """Same seeds and actions: equal observations, rewards, flags and infos; SameStep's
    final_obs is one dense batch, zero where no episode ended; Disabled: the ended envs
    are reset with their flags as reset_mask, a tensor on the adapter's device."""
    ours = make_vec(TASK, N, num_workers=2, autoreset_mode=mode, **KW)
    ref = OsimVectorEnv(TASK, N, num_workers=1, autoreset_mode=mode, **KW)
    try:
        o1, i1 = ours.reset(seed=3)
        o2, i2 = ref.reset(seed=3)
        np.testing.assert_array_equal(o1.numpy(), o2)
        assert set(i1) == set(i2)
        ends, te1, tr1, te2, tr2 = 0, None, None, np.zeros(N, bool), np.zeros(N, bool)
        for k in range(12):
            if mode == "Disabled" and (te2 | tr2).any():
                ended = (te1 | tr1).as_subclass(OnDevice)
                seeds = [50 + k if e else None for e in (te2 | tr2)]
                o1, i1 = ours.reset(seed=seeds, options={"reset_mask": ended})
                o2, i2 = ref.reset(seed=seeds, options={"reset_mask": te2 | tr2})
                np.testing.assert_array_equal(o1.numpy(), o2)
                assert_same_infos(i1, i2)
            # a tensor that needs grad, as a policy returns it
            act = torch.from_numpy(actions(k)).requires_grad_()
            o1, r1, te1, tr1, i1 = ours.step(act)
            o2, r2, te2, tr2, i2 = ref.step(actions(k))
            for x, y in ((o1, o2), (r1, r2), (te1, te2), (tr1, tr2)):
                assert isinstance(x, torch.Tensor)
                np.testing.assert_array_equal(x.numpy(), y)
            assert_same_infos(i1, i2)
            ends += int((te2 | tr2).sum())
            if "final_obs" in i2:
                mask = i1["_final_obs"].numpy()
                np.testing.assert_array_equal(mask, i2["_final_obs"])
                dense = i1["final_obs"].numpy()
                assert dense.shape == o2.shape and not dense[~mask].any()
                np.testing.assert_array_equal(dense[mask], np.stack(i2["final_obs"][mask]))
        assert ends > 0
        assert mode == "SameStep" or "final_obs" not in i1
    finally:
        ours.close()
        ref.close()


def test_async_api_with_tensors():
    """recv batches are tensors (fresh: the env gathers the rows), and its env_id
    tensor goes straight back into send."""
    envs = make_vec(TASK, 4, num_workers=2, batch_size=2, autoreset_mode="SameStep", **KW)
    try:
        a = shared(envs)
        envs.async_reset(seed=0)
        seen = np.zeros(4, int)
        for _ in range(10):
            obs, rew, term, trunc, info = envs.recv()
            ids = info["env_id"]
            assert isinstance(ids, torch.Tensor) and ids.shape == (2,) and obs.shape[0] == 2
            assert obs.data_ptr() != a.obs.ctypes.data
            np.testing.assert_array_equal(obs.numpy(), a.obs[ids.numpy()])
            seen[ids.numpy()] += 1
            envs.send(torch.zeros(2, 7), ids)
        assert (seen > 0).all()
        envs.recv(batch_size=2)
        envs.recv(batch_size=2)   # drained: every env idle again
        assert envs.get_attr("mode", env_ids=torch.tensor([0, 3])) == ("train", "train")
        assert envs.call("episode_steps")[0] == 5
    finally:
        envs.close()


def test_bad_adapter_input():
    venv = OsimVectorEnv(TASK, 1, num_workers=1, **KW)   # copy=True
    try:
        with pytest.raises(ValueError, match="made with copy=True"):
            TorchVectorEnv(venv)
        with pytest.raises(ValueError, match="device must be a torch device"):
            TorchVectorEnv(venv, copy=True, device="warp-drive")
        # a device type torch knows but this machine lacks, or one without data
        with pytest.raises(ValueError, match="device='meta' holds no data"):
            TorchVectorEnv(venv, copy=True, device="meta")
        if not torch.backends.mps.is_available():
            with pytest.raises(ValueError, match="device='mps' cannot hold a tensor here"):
                TorchVectorEnv(venv, copy=True, device="mps")
        if not CUDA:
            with pytest.raises(ValueError, match="sees no CUDA device"):
                TorchVectorEnv(venv, copy=True, device="cuda")
        with pytest.raises(ValueError, match="pin_memory=True stages copies to a CUDA"):
            TorchVectorEnv(venv, copy=True, pin_memory=True)
        envs = TorchVectorEnv(venv, copy=True)
        envs.reset(seed=0)
        with pytest.raises(ValueError, match=r"expected \(1, 7\)"):
            envs.step(torch.zeros(2, 7))
        # a ragged list: one line naming the expected shape, not NumPy's alone
        with pytest.raises(ValueError, match=r"not one array of shape \(1, 7\): setting an"):
            envs.step([[0.0] * 7, [0.0]])
        # bfloat16, autocast's output, is widened as float16 is (NumPy has no bfloat16)
        assert envs.step(torch.zeros(1, 7, dtype=torch.bfloat16))[0].dtype == torch.float32
    finally:
        venv.close()
    with pytest.raises(TypeError, match="wraps an OsimVectorEnv"):
        TorchVectorEnv(object())


def workers_of_this_process() -> set[int]:
    """Pool workers started by this test process (not those of other runs)."""
    out = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "fastenv.pool.worker"],
                         capture_output=True, text=True).stdout
    return set(map(int, out.split()))


def test_with_block_closes_the_pool():
    """``with make_vec(...) as envs:`` as for the OsimVectorEnv: no worker outlives the
    block, and a closed adapter says so."""
    before = workers_of_this_process()
    with make_vec(TASK, 2, num_workers=2, **KW) as envs:
        assert len(workers_of_this_process() - before) == 2
        envs.reset(seed=0)
    assert envs.closed and workers_of_this_process() <= before
    with pytest.raises(ClosedEnvError, match="closed OsimVectorEnv"):
        envs.step(torch.zeros(2, 7))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("n, workers, steps", [(N, 1, 8), (32, 8, 40)])
def test_cuda_batches_through_pinned_memory(n, workers, steps):
    """On CUDA: observations, rewards, flags and final_obs arrive on the device, staged
    in pinned buffers; the values equal the NumPy env's, every step's kept to the end
    (a staging buffer reused too early would show); infos stay on the host."""
    ours = make_vec(TASK, n, device="cuda", num_workers=workers, autoreset_mode="SameStep",
                    **KW)
    ref = OsimVectorEnv(TASK, n, num_workers=workers, autoreset_mode="SameStep", **KW)
    try:
        assert ours.pin_memory
        o1, _ = ours.reset(seed=1)
        o2, _ = ref.reset(seed=1)
        assert o1.is_cuda
        np.testing.assert_array_equal(o1.cpu().numpy(), o2)
        kept = []
        for k in range(steps):
            out = ours.step(torch.from_numpy(actions(k, n)).cuda())
            exp = ref.step(actions(k, n))
            kept.append((out, exp))
            for x in out[:4]:
                assert x.is_cuda
            assert not out[4]["phase"].is_cuda   # infos stay on the host
            if "final_obs" in exp[4]:
                assert out[4]["final_obs"].is_cuda and out[4]["_final_obs"].is_cuda
        for buf, _ in ours._staging.values():
            assert buf.is_pinned()
        # device tensors are fresh: each still holds its own step's values
        for out, exp in kept:
            for x, y in zip(out[:4], exp[:4]):
                np.testing.assert_array_equal(x.cpu().numpy(), y)
    finally:
        ours.close()
        ref.close()

