"""The JAX adapter: copies by default, DLPack views of the shared memory with copy=False
(checked by address), the same transitions as the NumPy env, final_obs as a dense
batch, JAX actions and env ids, and device_put where an accelerator exists."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from fastenv.adapters.jax import JaxVectorEnv, make_vec  # noqa: E402
from fastenv.vector import OsimVectorEnv  # noqa: E402

# 0.05 s episodes: every env ends after 5 steps, so short runs cross episode ends
TASK, KW = "TorqueWalkingImitation2D-v0", dict(episode_seconds=0.05)
N = 3


def _accelerator():
    for platform in ("gpu", "tpu"):
        try:
            return jax.devices(platform)[0]
        except RuntimeError:
            pass
    return None


ACCELERATOR = _accelerator()


def actions(k, n=N):
    return np.random.default_rng(k).uniform(-1, 1, (n, 7)).astype(np.float32)


def address(x) -> int:
    return x.unsafe_buffer_pointer()


def assert_same_infos(ours, ref):
    """Every info of the NumPy env, numeric ones as CPU JAX arrays (final_obs and its
    mask aside: they go to the adapter's device)."""
    assert set(ours) == set(ref)
    for key, value in ref.items():
        if key in ("final_obs", "_final_obs"):
            continue
        if isinstance(value, dict):
            assert_same_infos(ours[key], value)
        elif value.dtype == object:
            assert ours[key] is value
        else:
            assert isinstance(ours[key], jax.Array)
            assert ours[key].devices() == {jax.devices("cpu")[0]}
            np.testing.assert_array_equal(np.asarray(ours[key]),
                                          value.astype(ours[key].dtype), err_msg=key)


def test_copy_false_aliases_the_env_buffers():
    envs = make_vec(TASK, N, device="cpu", num_workers=1, copy=False, **KW)
    try:
        a = envs.unwrapped._a
        obs, _ = envs.reset(seed=0)
        assert address(obs) == a.obs.ctypes.data and obs.dtype == jnp.float32
        obs, rew, term, trunc, _ = envs.step(jnp.asarray(actions(0)))
        assert address(obs) == a.obs.ctypes.data
        assert address(term) == a.terminated.ctypes.data and term.dtype == jnp.bool_
        assert address(trunc) == a.truncated.ctypes.data
        # float64 rewards: converted to float32 (a copy) unless x64 is enabled
        x64 = jax.config.jax_enable_x64
        assert rew.dtype == (jnp.float64 if x64 else jnp.float32)
        assert (address(rew) == a.reward.ctypes.data) == x64
        before = np.array(obs)
        envs.step(actions(1))
        assert not np.array_equal(np.asarray(obs), before)   # overwritten, as documented
    finally:
        envs.close()


def test_default_copies_once():
    envs = make_vec(TASK, N, device="cpu", num_workers=1, **KW)
    try:
        assert envs.copy
        a = envs.unwrapped._a
        envs.reset(seed=0)
        obs, rew, term, _, _ = envs.step(actions(0))
        assert address(obs) != a.obs.ctypes.data and address(term) != a.terminated.ctypes.data
        kept = np.array(obs)
        envs.step(actions(1))
        np.testing.assert_array_equal(np.asarray(obs), kept)
    finally:
        envs.close()


# the host, and JAX's default device (the GPU where JAX sees one): infos stay on the host
@pytest.mark.parametrize("device", ["cpu", None])
@pytest.mark.parametrize("copy", [True, False])
def test_same_transitions_as_the_numpy_env(copy, device):
    ours = make_vec(TASK, N, device=device, num_workers=2, autoreset_mode="SameStep",
                    copy=copy, **KW)
    ref = OsimVectorEnv(TASK, N, num_workers=1, autoreset_mode="SameStep", **KW)
    try:
        o1, i1 = ours.reset(seed=3)
        o2, i2 = ref.reset(seed=3)
        np.testing.assert_array_equal(np.asarray(o1), o2)
        assert_same_infos(i1, i2)
        ends = 0
        for k in range(12):
            o1, r1, te1, tr1, i1 = ours.step(jnp.asarray(actions(k)))
            o2, r2, te2, tr2, i2 = ref.step(actions(k))
            np.testing.assert_array_equal(np.asarray(o1), o2)
            np.testing.assert_array_equal(np.asarray(r1), r2.astype(r1.dtype))
            np.testing.assert_array_equal(np.asarray(te1), te2)
            np.testing.assert_array_equal(np.asarray(tr1), tr2)
            assert_same_infos(i1, i2)
            if "final_obs" in i2:
                assert i1["final_obs"].devices() == i1["_final_obs"].devices() == o1.devices()
                mask = np.asarray(i1["_final_obs"])
                np.testing.assert_array_equal(mask, i2["_final_obs"])
                ends += int(mask.sum())
                dense = np.asarray(i1["final_obs"])
                assert dense.shape == o2.shape and not dense[~mask].any()
                np.testing.assert_array_equal(dense[mask], np.stack(i2["final_obs"][mask]))
        assert ends > 0
    finally:
        ours.close()
        ref.close()


@pytest.mark.parametrize("mode", ["NextStep", "Disabled"])
def test_views_equal_the_numpy_env_in_the_other_autoreset_modes(mode):
    """copy=False (views of the shared memory) across episode ends; Disabled: the ended
    envs are reset with a JAX reset_mask, and the partial reset's observations are
    fresh, not a view."""
    with make_vec(TASK, N, device="cpu", num_workers=2, autoreset_mode=mode, copy=False,
                  **KW) as ours, OsimVectorEnv(TASK, N, num_workers=1,
                                               autoreset_mode=mode, **KW) as ref:
        o1, _ = ours.reset(seed=4)
        o2, _ = ref.reset(seed=4)
        np.testing.assert_array_equal(np.asarray(o1), o2)
        ends, done = 0, np.zeros(N, bool)
        for k in range(12):
            if mode == "Disabled" and done.any():
                o1, i1 = ours.reset(seed=[60 + k if d else None for d in done],
                                    options={"reset_mask": jnp.asarray(done)})
                o2, i2 = ref.reset(seed=[60 + k if d else None for d in done],
                                   options={"reset_mask": done})
                np.testing.assert_array_equal(np.asarray(o1), o2)
                assert address(o1) != ours.unwrapped._a.obs.ctypes.data
                assert_same_infos(i1, i2)
            o1, r1, te1, tr1, i1 = ours.step(jnp.asarray(actions(k)))
            o2, r2, te2, tr2, i2 = ref.step(actions(k))
            for x, y in ((o1, o2), (r1, r2), (te1, te2), (tr1, tr2)):
                np.testing.assert_array_equal(np.asarray(x), y.astype(x.dtype))
            assert_same_infos(i1, i2)
            done = te2 | tr2
            ends += int(done.sum())
        assert ends > 0 and "final_obs" not in i1


def test_async_api_with_jax_arrays():
    envs = make_vec(TASK, 4, device="cpu", num_workers=2, batch_size=2,
                    autoreset_mode="SameStep", **KW)
    try:
        envs.async_reset(seed=0)
        seen = np.zeros(4, int)
        for _ in range(10):
            obs, rew, term, trunc, info = envs.recv()
            ids = info["env_id"]
            assert isinstance(ids, jax.Array) and obs.shape[0] == 2
            seen[np.asarray(ids)] += 1
            envs.send(jnp.zeros((2, 7)), ids)
        assert (seen > 0).all()
        envs.recv(batch_size=4)
        assert envs.get_attr("mode", env_ids=jnp.array([1])) == ("train",)
    finally:
        envs.close()


def test_bad_adapter_input():
    venv = OsimVectorEnv(TASK, 1, num_workers=1, **KW)   # copy=True
    try:
        with pytest.raises(ValueError, match="made with copy=True"):
            JaxVectorEnv(venv, copy=False)
        with pytest.raises(ValueError, match="device must be a jax.Device or a platform"):
            JaxVectorEnv(venv, device="warp-drive")
        with pytest.raises(ValueError, match="device must be a jax.Device or a platform"):
            JaxVectorEnv(venv, device="cpu:7")
        envs = JaxVectorEnv(venv, device="cpu")
        envs.reset(seed=0)
        with pytest.raises(ValueError, match=r"expected \(1, 7\)"):
            envs.step(jnp.zeros((2, 7)))
        with pytest.raises(ValueError, match=r"not one array of shape \(1, 7\): setting an"):
            envs.step([jnp.zeros(7), jnp.zeros(6)])
        # bfloat16 arrays came as "not a real number dtype"
        assert envs.step(jnp.zeros((1, 7), jnp.bfloat16))[0].dtype == jnp.float32
    finally:
        venv.close()


@pytest.mark.skipif(ACCELERATOR is None, reason="needs a JAX GPU or TPU device")
@pytest.mark.parametrize("n, workers, steps", [(N, 1, 8), (32, 8, 40)])
def test_accelerator_batches_with_device_put(n, workers, steps):
    ours = make_vec(TASK, n, device=ACCELERATOR, num_workers=workers,
                    autoreset_mode="SameStep", **KW)
    ref = OsimVectorEnv(TASK, n, num_workers=workers, autoreset_mode="SameStep", **KW)
    try:
        o1, _ = ours.reset(seed=1)
        o2, _ = ref.reset(seed=1)
        assert o1.devices() == {ACCELERATOR}
        kept = []
        for k in range(steps):
            out = ours.step(jax.device_put(actions(k, n), ACCELERATOR))
            kept.append((out, ref.step(actions(k, n))))
            assert all(x.devices() == {ACCELERATOR} for x in out[:4])
            assert out[4]["phase"].devices() == {jax.devices("cpu")[0]}   # infos: host
        for out, exp in kept:   # fresh device arrays: each holds its own step
            for x, y in zip(out[:4], exp[:4]):
                x = np.asarray(x)   # rewards: float32 unless x64 is on
                np.testing.assert_array_equal(x, y.astype(x.dtype))
    finally:
        ours.close()
        ref.close()



@pytest.mark.parametrize("framework, message", [
    ("torch", "device must be a torch device"),
    ("jax", "device must be a jax.Device or a platform")])
def test_a_bad_device_is_refused_before_the_workers_start(monkeypatch, framework, message):
    """Either adapter's make_vec checks ``device`` first: it had started the pool
    (seconds) and then failed on the device."""
    import importlib
    adapter = importlib.import_module(f"fastenv.adapters.{framework}")

    def no_pool(*args, **kwargs):
        raise AssertionError("the pool started before the device was checked")
    monkeypatch.setattr(adapter, "OsimVectorEnv", no_pool)
    with pytest.raises(ValueError, match=message):
        adapter.make_vec(TASK, 1, device="warp-drive")
