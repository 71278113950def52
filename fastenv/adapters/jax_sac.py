"""Soft actor-critic in JAX: the learner of ``fastenv train --backend jax``.

The original BioImitation-Gym shipped a JAX SAC; this one follows Stable-Baselines3's
``SAC`` step for step, so that the packaged ``sac.toml`` means the same on either
backend: twin critics with Polyak-averaged targets, a tanh-squashed Gaussian actor
(log std clipped to [-20, 2]), an entropy coefficient learned towards
``-action_dim`` (``ent_coef = "auto"`` or ``"auto_<initial>"``) or fixed, Adam
(torch's defaults), uniform random actions for the first ``learning_starts`` env
steps, ``gradient_steps`` updates of ``batch_size`` every ``train_freq`` vector steps,
and observations normalised with running statistics (SB3's ``VecNormalize``: clipped
at ±10, the replay buffer keeps raw observations and normalises a batch with the
current statistics). Two differences, both stated where they apply: ``log_std_init``
is the initial bias of the log-std head (SB3's SAC reads it only with gSDE), and the
layers start as torch's ``nn.Linear`` does, from JAX's random numbers.

Only ``jax`` is needed (no optax or flax). A checkpoint's ``policy.npz`` holds the
actor and the observation statistics as plain arrays: :func:`checkpoint_policy`
evaluates it with NumPy alone.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0   # SB3's clip of the actor's log std
CLIP_OBS, OBS_EPSILON = 10.0, 1e-8      # SB3's VecNormalize defaults
#: the [algo] keys this learner reads (SB3's names); any other is refused
ALGO_KEYS = ("learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma",
             "train_freq", "gradient_steps", "ent_coef")
POLICY_KEYS = ("net_arch", "log_std_init")


def check_config(cfg: dict):
    """The ``[algo]`` and ``[policy]`` keys this learner reads, with usable values."""
    for section, keys in (("algo", ALGO_KEYS), ("policy", POLICY_KEYS)):
        unknown = sorted(set(cfg[section]) - set(keys))
        if unknown:
            raise ValueError(f"[{section}] {unknown}: not read by the JAX SAC (--backend jax "
                             f"reads {', '.join(keys)})")
    arch = cfg["policy"].get("net_arch", [256, 256])
    if not (isinstance(arch, list) and arch and all(isinstance(n, int) and n > 0 for n in arch)):
        raise ValueError(f"[policy] net_arch = {arch!r}: expected a list of layer widths, "
                         f"e.g. [256, 256]")
    if cfg["env"].get("normalize_rewards", False):
        raise ValueError("[env] normalize_rewards = true: the JAX SAC does not scale "
                         "rewards (nor does SB3's SAC by default); set it to false")
    _entropy_coefficient(cfg["algo"].get("ent_coef", "auto"))
    train_frequency(cfg["algo"].get("train_freq", 1))


def train_frequency(value) -> int:
    """``train_freq`` in vector steps: a whole number >= 1 or SB3's ``[n, "step"]``
    (checked here: a zero or a list used to fail only after the run folder was written)."""
    if isinstance(value, list) and len(value) == 2 and value[1] == "step":
        value = value[0]
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"[algo] train_freq = {value!r}: the JAX SAC expects a whole number "
                         f">= 1 of vector steps (or [n, \"step\"])")
    return value


def _entropy_coefficient(value) -> tuple[bool, float]:
    """``(learned, initial value)`` of ``ent_coef``: ``"auto"``, ``"auto_0.1"`` or a
    positive number."""
    text = str(value)
    learned = text.startswith("auto")
    try:
        initial = float(text.removeprefix("auto").removeprefix("_") or 1.0)
    except ValueError:
        initial = math.nan
    if not initial > 0:
        raise ValueError(f"[algo] ent_coef = {value!r}: expected 'auto', 'auto_<initial>' "
                         f"or a positive number")
    return learned, initial


# ----------------------------------------------------------------------- statistics
class ObservationStatistics:
    """Running mean and variance of the observations (SB3's ``RunningMeanStd``, merged
    batch by batch), and the normalisation they define."""

    def __init__(self, size: int):
        self.mean = np.zeros(size)
        self.var = np.ones(size)
        self.count = 1e-4

    def update(self, batch: np.ndarray):
        b_mean, b_var, n = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta, total = b_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + b_var * n
                    + delta ** 2 * self.count * n / total) / total
        self.count = total

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - self.mean) / np.sqrt(self.var + OBS_EPSILON),
                       -CLIP_OBS, CLIP_OBS).astype(np.float32)


class ReplayBuffer:
    """A ring of the last ``capacity`` transitions (raw observations; actions in the
    squashed [-1, 1] space), sampled uniformly with replacement."""

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        self.capacity, self.size, self.pos = int(capacity), 0, 0
        self.obs = np.zeros((self.capacity, obs_dim), np.float32)
        self.action = np.zeros((self.capacity, action_dim), np.float32)
        self.reward = np.zeros(self.capacity, np.float32)
        self.next_obs = np.zeros((self.capacity, obs_dim), np.float32)
        self.terminated = np.zeros(self.capacity, np.float32)

    def add(self, obs, action, reward, next_obs, terminated):
        n = len(obs)
        rows = (self.pos + np.arange(n)) % self.capacity
        for name, value in zip(self.FIELDS, (obs, action, reward, next_obs, terminated)):
            getattr(self, name)[rows] = value
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, rng: np.random.Generator, n: int) -> dict:
        rows = rng.integers(0, self.size, n)
        return {name: getattr(self, name)[rows] for name in self.FIELDS}

    def save(self, path: Path):
        np.savez(path, size=self.size, pos=self.pos,
                 **{name: getattr(self, name)[:self.size] for name in self.FIELDS})

    def load(self, path: Path):
        with np.load(path) as saved:
            self.size, self.pos = int(saved["size"]), int(saved["pos"])
            for name in self.FIELDS:
                getattr(self, name)[:self.size] = saved[name]


# ----------------------------------------------------------------------- networks
def _dense(key, n_in: int, n_out: int):
    """torch's ``nn.Linear`` initialisation: weights and biases uniform in
    ±1/sqrt(fan_in)."""
    import jax
    bound = 1.0 / math.sqrt(n_in)
    k_w, k_b = jax.random.split(key)
    return (jax.random.uniform(k_w, (n_in, n_out), minval=-bound, maxval=bound),
            jax.random.uniform(k_b, (n_out,), minval=-bound, maxval=bound))


def _mlp(key, sizes):
    import jax
    keys = jax.random.split(key, len(sizes) - 1)
    return [_dense(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def _hidden(layers, x):
    """Layers each followed by a ReLU (SB3's SAC default)."""
    import jax.numpy as jnp
    for w, b in layers:
        x = jnp.maximum(x @ w + b, 0.0)
    return x


def _forward(layers, x):
    """ReLU between layers, linear output (a critic)."""
    w, b = layers[-1]
    return _hidden(layers[:-1], x) @ w + b


class SAC:
    """The learner: ``act`` for the actions of a batch of (normalised) observations,
    ``update`` for ``gradient_steps`` updates from the replay buffer; ``state()`` and
    ``load_state()`` for a resume, ``policy_arrays()`` for a checkpoint's policy."""

    def __init__(self, obs_dim: int, action_dim: int, algo: dict, policy: dict, seed: int):
        import jax
        import jax.numpy as jnp
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.gamma = float(algo.get("gamma", 0.99))
        self.tau = float(algo.get("tau", 0.005))
        self.lr = float(algo.get("learning_rate", 3e-4))
        self.learned_alpha, alpha0 = _entropy_coefficient(algo.get("ent_coef", "auto"))
        self.target_entropy = -float(action_dim)
        arch = list(policy.get("net_arch", [256, 256]))
        k_body, k_mu, k_std, k_q1, k_q2, self._key = jax.random.split(jax.random.PRNGKey(seed), 6)
        body = _mlp(k_body, [obs_dim, *arch])
        log_std = _dense(k_std, arch[-1], action_dim)
        if "log_std_init" in policy:   # the initial exploration noise, std exp(log_std_init)
            log_std = (log_std[0], jnp.full(action_dim, float(policy["log_std_init"])))
        actor = {"body": body, "mu": _dense(k_mu, arch[-1], action_dim), "log_std": log_std}
        critics = [_mlp(k, [obs_dim + action_dim, *arch, 1]) for k in (k_q1, k_q2)]
        params = {"actor": actor, "critics": critics, "log_alpha": jnp.log(alpha0)}
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        self.train_state = {"params": params, "target": jax.tree_util.tree_map(jnp.array, critics),
                            "m": zeros, "v": jax.tree_util.tree_map(jnp.zeros_like, params),
                            "t": jnp.zeros((), jnp.int32)}
        self._act = jax.jit(self._sample, static_argnames="deterministic")
        self._update = jax.jit(self._update_step)
        self.n_updates = 0

    # -------------------------------------------------------------- actor
    @staticmethod
    def _actor(actor, obs):
        import jax.numpy as jnp
        h = _hidden(actor["body"], obs)
        mu = h @ actor["mu"][0] + actor["mu"][1]
        log_std = jnp.clip(h @ actor["log_std"][0] + actor["log_std"][1], LOG_STD_MIN, LOG_STD_MAX)
        return mu, log_std

    def _sample(self, actor, obs, key, deterministic=False):
        """Squashed actions in [-1, 1] and their log-probabilities (SB3's tanh
        correction: log(1 - tanh(u)^2 + 1e-6))."""
        import jax
        import jax.numpy as jnp
        mu, log_std = self._actor(actor, obs)
        if deterministic:
            return jnp.tanh(mu), jnp.zeros(obs.shape[0])
        std = jnp.exp(log_std)
        u = mu + std * jax.random.normal(key, mu.shape)
        a = jnp.tanh(u)
        log_prob = jnp.sum(-0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi),
                           axis=-1)
        return a, log_prob - jnp.sum(jnp.log(1.0 - a ** 2 + 1e-6), axis=-1)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions in [-1, 1] for a batch of normalised observations."""
        import jax
        self._key, key = jax.random.split(self._key)
        a, _ = self._act(self.train_state["params"]["actor"], obs, key,
                         deterministic=deterministic)
        return np.asarray(a)

    # -------------------------------------------------------------- update
    def _update_step(self, state, batch, key):
        """One SB3 SAC gradient step: the entropy coefficient, then the critics, then
        the actor against the updated critics (the same sampled actions), then the
        targets."""
        import jax
        import jax.numpy as jnp
        p = state["params"]
        k_pi, k_next = jax.random.split(key)
        obs, act, next_obs = batch["obs"], batch["action"], batch["next_obs"]
        actions_pi, log_prob = self._sample(p["actor"], obs, k_pi)

        def alpha_loss(log_alpha):
            return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_prob + self.target_entropy))
        g_alpha = jax.grad(alpha_loss)(p["log_alpha"]) if self.learned_alpha else 0.0
        alpha = jnp.exp(p["log_alpha"])   # the value before this step's update, as SB3

        next_a, next_log_prob = self._sample(p["actor"], next_obs, k_next)
        next_in = jnp.concatenate([next_obs, next_a], axis=-1)
        next_q = jnp.minimum(*(_forward(c, next_in)[:, 0] for c in state["target"]))
        target = batch["reward"] + (1.0 - batch["terminated"]) * self.gamma * (
            next_q - alpha * next_log_prob)
        target = jax.lax.stop_gradient(target)

        def critic_loss(critics):
            x = jnp.concatenate([obs, act], axis=-1)
            return 0.5 * sum(jnp.mean((_forward(c, x)[:, 0] - target) ** 2) for c in critics)
        c_loss, g_critics = jax.value_and_grad(critic_loss)(p["critics"])
        t = state["t"] + 1
        new = dict(p)
        new["critics"], m_c, v_c = _adam(p["critics"], g_critics, state["m"]["critics"],
                                         state["v"]["critics"], t, self.lr)

        def actor_loss(actor):
            a, lp = self._sample(actor, obs, k_pi)   # the same noise: actions_pi again
            x = jnp.concatenate([obs, a], axis=-1)
            q = jnp.minimum(*(_forward(c, x)[:, 0] for c in new["critics"]))
            return jnp.mean(alpha * lp - q)
        a_loss, g_actor = jax.value_and_grad(actor_loss)(p["actor"])
        new["actor"], m_a, v_a = _adam(p["actor"], g_actor, state["m"]["actor"],
                                       state["v"]["actor"], t, self.lr)
        new["log_alpha"], m_l, v_l = _adam(p["log_alpha"], g_alpha, state["m"]["log_alpha"],
                                           state["v"]["log_alpha"], t, self.lr)
        targets = jax.tree_util.tree_map(lambda tq, q: (1 - self.tau) * tq + self.tau * q,
                                         state["target"], new["critics"])
        out = {"params": new, "target": targets, "t": t,
               "m": {"actor": m_a, "critics": m_c, "log_alpha": m_l},
               "v": {"actor": v_a, "critics": v_c, "log_alpha": v_l}}
        return out, {"critic_loss": c_loss, "actor_loss": a_loss, "ent_coef": alpha,
                     "log_prob": jnp.mean(log_prob)}

    def update(self, batch: dict) -> dict:
        """One gradient step on ``batch`` (normalised observations); returns its losses."""
        import jax
        self._key, key = jax.random.split(self._key)
        self.train_state, metrics = self._update(self.train_state, batch, key)
        self.n_updates += 1
        return {k: float(v) for k, v in metrics.items()}

    # -------------------------------------------------------------- saving
    def policy_arrays(self) -> dict:
        """The actor as plain arrays (``policy.npz``): ``W0, b0, ...`` of the hidden
        layers, then ``mu_W, mu_b``."""
        actor = self.train_state["params"]["actor"]
        arrays = {}
        for i, (w, b) in enumerate(actor["body"]):
            arrays[f"W{i}"], arrays[f"b{i}"] = np.asarray(w), np.asarray(b)
        arrays["mu_W"], arrays["mu_b"] = (np.asarray(x) for x in actor["mu"])
        return arrays

    def state(self) -> dict:
        """Everything a resume needs, as arrays: the train state's leaves in order, the
        random key and the update count."""
        import jax
        leaves = jax.tree_util.tree_leaves(self.train_state)
        return {**{f"leaf{i}": np.asarray(x) for i, x in enumerate(leaves)},
                "key": np.asarray(self._key),   # a raw uint32 key (jax.random.PRNGKey)
                "n_updates": np.asarray(self.n_updates)}

    def load_state(self, arrays):
        import jax
        import jax.numpy as jnp
        treedef = jax.tree_util.tree_structure(self.train_state)
        leaves = jax.tree_util.tree_leaves(self.train_state)
        loaded = [jnp.asarray(arrays[f"leaf{i}"]) for i in range(len(leaves))]
        for i, (old, new) in enumerate(zip(leaves, loaded)):
            if old.shape != new.shape:
                raise ValueError(f"saved learner state does not fit this network: leaf {i} "
                                 f"has shape {new.shape}, expected {old.shape}")
        self.train_state = jax.tree_util.tree_unflatten(treedef, loaded)
        self._key = jnp.asarray(arrays["key"], dtype=self._key.dtype)
        self.n_updates = int(arrays["n_updates"])


def _adam(params, grads, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    """torch's Adam (no weight decay) on a pytree; returns (params, m, v)."""
    import jax
    m = jax.tree_util.tree_map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
    v = jax.tree_util.tree_map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    params = jax.tree_util.tree_map(
        lambda p, m_, v_: p - lr * (m_ / c1) / ((v_ / c2) ** 0.5 + eps), params, m, v)
    return params, m, v


# ----------------------------------------------------------------------- inference
def save_policy(folder: Path, sac: SAC, stats: ObservationStatistics | None, low, high):
    """``folder/policy.npz``: the actor, the observation statistics (None: observations
    go to the actor as they are) and the action bounds, all a deterministic policy
    needs."""
    normalized = stats is not None
    stats = stats or ObservationStatistics(sac.obs_dim)
    np.savez(folder / "policy.npz", obs_normalized=np.asarray(normalized),
             obs_mean=stats.mean, obs_var=stats.var, obs_count=np.asarray(stats.count),
             action_low=np.asarray(low), action_high=np.asarray(high), **sac.policy_arrays())


def checkpoint_policy(folder):
    """The deterministic policy of a ``--backend jax`` checkpoint, in NumPy:
    ``policy(obs) -> action`` for one observation (normalised with the saved statistics;
    ``tanh`` of the actor's mean, mapped onto the action bounds), carrying its
    ``observation_space`` and ``action_space``."""
    import gymnasium as gym
    path = Path(folder) / "policy.npz"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {folder} is incomplete: policy.npz is missing")
    try:
        with np.load(path) as saved:
            arrays = {k: saved[k] for k in saved.files}
    except Exception as exc:   # a damaged archive raises any of several types
        raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    n_hidden = sum(1 for k in arrays if k.startswith("W"))
    layers = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n_hidden)]
    mean, scale = arrays["obs_mean"], np.sqrt(arrays["obs_var"] + OBS_EPSILON)
    low, high = arrays["action_low"], arrays["action_high"]

    normalized = bool(arrays["obs_normalized"])

    def policy(obs):
        h = np.asarray(obs, np.float64)
        if normalized:
            h = np.clip((h - mean) / scale, -CLIP_OBS, CLIP_OBS)
        h = h.astype(np.float32)
        for w, b in layers:
            h = np.maximum(h @ w + b, 0.0)
        a = np.tanh(h @ arrays["mu_W"] + arrays["mu_b"])
        return (low + (a + 1.0) * 0.5 * (high - low)).astype(np.float32)
    policy.observation_space = gym.spaces.Box(-np.inf, np.inf, mean.shape, np.float32)
    policy.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))
    return policy
