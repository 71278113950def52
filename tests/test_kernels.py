"""Compiled kernels equal their NumPy twins (bitwise: same operation order, libm)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastenv import kernels as K

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def arrays(rng, *shape, scale=1.0):
    return np.ascontiguousarray(rng.normal(size=shape) * scale)


@settings(max_examples=50, deadline=None)
@given(n_env=st.integers(1, 4), n_buf=st.integers(2, 40), n_obs=st.integers(1, 60),
       seed=st.integers(0, 2**32 - 1))
def test_gather_observation_equals_numpy(n_env, n_buf, n_obs, seed):
    rng = np.random.default_rng(seed)
    buf = arrays(rng, n_env, n_buf, scale=100)
    src = rng.integers(0, n_buf, n_obs).astype(np.intp)
    ref = rng.integers(0, n_buf, n_obs).astype(np.intp)
    scale = arrays(rng, n_obs)
    out32 = np.empty((n_env, n_obs), np.float32)
    out64 = np.empty((n_env, n_obs), np.float64)
    K.gather_observation(buf, src, ref, scale, out32)
    K.gather_observation64(buf, src, ref, scale, out64)
    np.testing.assert_array_equal(out32, K.gather_observation_numpy(buf, src, ref, scale))
    np.testing.assert_array_equal(out64, K.gather_observation_numpy(buf, src, ref, scale,
                                                                    np.float64))


@settings(max_examples=50, deadline=None)
@given(n_env=st.integers(1, 3), horizon=st.integers(1, 6), n=st.integers(1, 20),
       steps=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_smooth_action_equals_numpy(n_env, horizon, n, steps, seed):
    rng = np.random.default_rng(seed)
    hist = np.zeros((n_env, horizon, n))
    hist_ref = hist.copy()
    count = np.zeros(n_env, np.intp)
    out = np.empty((n_env, n))
    for _ in range(steps):
        a = arrays(rng, n_env, n)
        K.smooth_action(hist, count, a, out)
        hist_ref, expected = K.smooth_action_numpy(hist_ref, count, a)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(hist, hist_ref)
        count += 1


def test_smooth_action_is_moving_average():
    hist, count, out = np.zeros((1, 3, 1)), np.zeros(1, np.intp), np.empty((1, 1))
    seen = []
    for v in [3.0, 6.0, 9.0, 12.0]:
        seen.append(v)
        K.smooth_action(hist, count, np.array([[v]]), out)
        count += 1
        assert out[0, 0] == pytest.approx(np.mean(seen[-3:]))


@settings(max_examples=50, deadline=None)
@given(n_env=st.integers(1, 4), n=st.integers(1, 12), max_act=st.floats(1.0, 500.0),
       seed=st.integers(0, 2**32 - 1))
def test_pd_control_equals_numpy(n_env, n, max_act, seed):
    rng = np.random.default_rng(seed)
    action = np.clip(arrays(rng, n_env, n), -1, 1)
    lower = -np.abs(arrays(rng, n)) - 0.1
    upper = np.abs(arrays(rng, n)) + 0.1
    q, qd = arrays(rng, n_env, n), arrays(rng, n_env, n, scale=5)
    kp, kd = np.abs(arrays(rng, n, scale=300)), np.abs(arrays(rng, n, scale=30))
    torque, target = np.empty((n_env, n)), np.empty((n_env, n))
    K.pd_control(action, lower, upper, q, qd, kp, kd, max_act, torque, target)
    t_ref, target_ref = K.pd_control_numpy(action, lower, upper, q, qd, kp, kd, max_act)
    np.testing.assert_array_equal(torque, t_ref)
    np.testing.assert_array_equal(target, target_ref)
    assert np.all(np.abs(torque) <= max_act)


@settings(max_examples=50, deadline=None)
@given(n_env=st.integers(1, 4), nq=st.integers(1, 15), nc=st.integers(2, 3),
       na=st.integers(1, 22), w=st.tuples(st.floats(0, 2), st.floats(0, 2), st.floats(0, 2)),
       seed=st.integers(0, 2**32 - 1))
def test_imitation_reward_equals_numpy(n_env, nq, nc, na, w, seed):
    rng = np.random.default_rng(seed)
    args = (arrays(rng, n_env, nq, scale=0.3), arrays(rng, n_env, nq, scale=0.3),
            arrays(rng, n_env, nc, scale=0.1), arrays(rng, n_env, nc, scale=0.1),
            rng.random((n_env, na)), rng.random((n_env, na)), np.abs(arrays(rng, n_env)))
    terms = np.empty((n_env, len(K.REWARD_TERMS)))
    K.imitation_reward(*args, *w, terms)
    np.testing.assert_array_equal(terms, K.imitation_reward_numpy(*args, *w))


def test_imitation_reward_terms_by_hand():
    q, q_ref = np.array([[0.1, 0.2]]), np.array([[0.0, 0.0]])
    com, com_ref = np.array([[1.0, 0.9]]), np.array([[1.1, 0.9]])
    a, a_prev = np.array([[0.5, 0.5, 0.5]]), np.array([[0.5, 0.5, 0.0]])
    terms = np.empty((1, 6))
    K.imitation_reward(q, q_ref, com, com_ref, a, a_prev, np.array([0.7]), 0.8, 0.2, 0.1, terms)
    mse = (0.01 + 0.04) / 2
    imit = 1.3 * np.exp(-30 * mse) * np.exp(-20 * 0.01)
    assert terms[0, 1] == pytest.approx(imit)
    assert terms[0, 2] == pytest.approx(np.exp(-0.7))
    assert terms[0, 3] == pytest.approx(np.exp(-0.5))
    assert terms[0, 0] == pytest.approx(imit + 0.2 * np.exp(-0.7) + 0.1 * np.exp(-0.5))


@settings(max_examples=50, deadline=None)
@given(n_env=st.integers(1, 4), nq=st.integers(1, 15), nc=st.integers(2, 3),
       na=st.integers(1, 22), w=st.tuples(st.floats(0, 2), st.floats(0, 2), st.floats(0, 2)),
       seed=st.integers(0, 2**32 - 1))
def test_tracking_reward_equals_numpy(n_env, nq, nc, na, w, seed):
    rng = np.random.default_rng(seed)
    args = (arrays(rng, n_env, nq, scale=0.3), arrays(rng, n_env, nq, scale=0.3),
            arrays(rng, n_env, nq, scale=3.0), arrays(rng, n_env, nq, scale=3.0),
            arrays(rng, n_env, nc, scale=1.0), arrays(rng, n_env, nc, scale=1.0),
            arrays(rng, n_env, nc, scale=0.1), arrays(rng, n_env, nc, scale=0.1),
            rng.random((n_env, na)), rng.random((n_env, na)), np.abs(arrays(rng, n_env)))
    terms = np.empty((n_env, len(K.TRACKING_REWARD_TERMS)))
    K.tracking_reward(*args, *w, terms)
    np.testing.assert_array_equal(terms, K.tracking_reward_numpy(*args, *w))


def test_tracking_reward_terms_by_hand():
    """Each term by its formula, and the imitation term stays informative far from the
    reference, where the original product has collapsed."""
    q, q_ref = np.array([[0.1, 0.2]]), np.array([[0.0, 0.0]])
    qd, qd_ref = np.array([[1.0, -1.0]]), np.array([[0.0, 1.0]])
    cv, cv_ref = np.array([[1.1, 0.1]]), np.array([[1.3, 0.0]])
    com, com_ref = np.array([[1.0, 0.9]]), np.array([[1.1, 0.9]])
    a, a_prev = np.array([[0.5, 0.5, 0.5]]), np.array([[0.5, 0.5, 0.0]])
    terms = np.empty((1, 9))
    K.tracking_reward(q, q_ref, qd, qd_ref, cv, cv_ref, com, com_ref, a, a_prev,
                      np.array([0.7]), 0.8, 0.2, 0.1, terms)
    pose, vel, cvel = np.exp(-10 * 0.025), np.exp(-0.1 * 2.5), np.exp(-10 * 0.05)
    imit = 1.3 * (0.6 * pose + 0.2 * vel + 0.2 * cvel)
    assert terms[0, 6:] == pytest.approx([pose, vel, cvel])
    assert terms[0, 1] == pytest.approx(imit)
    assert terms[0, 4:6] == pytest.approx([0.025, 0.01])
    assert terms[0, 0] == pytest.approx(imit + 0.2 * np.exp(-0.7) + 0.1 * np.exp(-0.5))
    # 20 degrees RMS and 0.5 m behind the reference
    far = np.full((1, 7), np.radians(20.0))
    original = np.empty((1, 6))
    K.imitation_reward(far, 0 * far, np.array([[0.5, 0.9]]), np.array([[1.0, 0.9]]), a, a,
                       np.array([0.0]), 0.8, 0.2, 0.1, original)
    K.tracking_reward(far, 0 * far, 0 * far, 0 * far, cv, cv, np.array([[0.5, 0.9]]),
                      np.array([[1.0, 0.9]]), a, a, np.array([0.0]), 0.8, 0.2, 0.1, terms)
    assert original[0, 1] < 0.01 < 0.5 < terms[0, 1]


@settings(max_examples=30, deadline=None)
@given(n_env=st.integers(1, 4), n=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_torque_cost_equals_numpy(n_env, n, seed):
    rng = np.random.default_rng(seed)
    torque = arrays(rng, n_env, n, scale=100)
    out = np.empty(n_env)
    K.torque_cost(torque, 200.0, out)
    np.testing.assert_array_equal(out, K.torque_cost_numpy(torque, 200.0))


@settings(max_examples=40, deadline=None)
@given(n_tri=st.integers(1, 40), height=st.integers(1, 40), width=st.integers(1, 50),
       seed=st.integers(0, 2**32 - 1))
def test_rasterize_equals_numpy(n_tri, height, width, seed):
    """Overlapping triangles, partly off the image, shared vertices (edges on pixel
    centres), degenerate and non-finite ones: the same pixels and depths, bitwise."""
    rng = np.random.default_rng(seed)
    n_vert = 3 * n_tri
    v = np.column_stack([rng.uniform(-10, width + 10, n_vert),
                         rng.uniform(-10, height + 10, n_vert), rng.uniform(0.5, 5.0, n_vert)])
    on_centre = rng.random(n_vert) < 0.2
    v[on_centre, :2] = np.round(v[on_centre, :2]) + 0.5
    v[rng.random(n_vert) < 0.03] = np.nan
    tri = rng.integers(0, n_vert, (n_tri, 3)).astype(np.intc)
    degenerate = rng.random(n_tri) < 0.1
    tri[degenerate, 2] = tri[degenerate, 1]
    colors = rng.integers(0, 256, (n_tri, 3)).astype(np.uint8)
    depth, image = np.full((height, width), np.inf), np.zeros((height, width, 3), np.uint8)
    depth_ref, image_ref = depth.copy(), image.copy()
    K.rasterize(v, tri, colors, depth, image)
    K.rasterize_numpy(v, tri, colors, depth_ref, image_ref)
    np.testing.assert_array_equal(depth, depth_ref)
    np.testing.assert_array_equal(image, image_ref)


def test_rasterize_covers_the_triangle_and_keeps_the_nearest():
    depth, image = np.full((10, 10), np.inf), np.zeros((10, 10, 3), np.uint8)
    square = np.array([[2, 2, 1.0], [8, 2, 1.0], [8, 8, 1.0], [2, 8, 1.0]])
    behind = square + [0, 0, 1.0]
    tri = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], np.intc)
    colors = np.array([[255, 0, 0]] * 2 + [[0, 255, 0]] * 2, np.uint8)
    K.rasterize(np.vstack([square, behind]), tri, colors, depth, image)
    assert (image[2:8, 2:8] == [255, 0, 0]).all() and (depth[2:8, 2:8] == 1.0).all()
    assert (image[:2] == 0).all() and (image[8:] == 0).all() and np.isinf(depth[0, 0])
