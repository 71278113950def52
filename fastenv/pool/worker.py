"""Worker process: owns several envs, steps them on command, writes shared memory.

Protocol (parent -> worker, one message per command, ``Connection.send_bytes``):
  ``b"S" + int32 env ids``  step those envs with their rows of ``actions``
  ``b"R" + int32 env ids``  reset them (seed/options from shared rows)
  ``b"P" + pickle``         a rare command: call / get_attr / set_attr / close
Worker -> parent: one message per finished env, ``int32 env id`` plus, only when
the env produced non-scalar info (e.g. a ``sim_error`` message), a pickled dict.
Replies to ``P`` commands are a pickled ``(ok, value)``. Per-env completion
messages are what lets the parent return the first finished envs (envpool-style
``recv``) and lets a worker be replaced without touching the others' envs.
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
import traceback

import numpy as np

from fastenv.pool.shared import INFO_KEYS, SharedArrays

NEXT_STEP, SAME_STEP, DISABLED = "next_step", "same_step", "disabled"
_KEY_INDEX = {k: i for i, k in enumerate(INFO_KEYS)}
_ID = struct.Struct("<i")


def make_env(env_kwargs: dict):
    from fastenv.env import ImitationEnv
    return ImitationEnv(**env_kwargs)


def _write_info(values, present, row, info) -> dict | None:
    """Scalars into shared rows; returns the rest (sent with the completion message)."""
    present[row] = False
    extra = None
    for key, v in info.items():
        k = _KEY_INDEX.get(key)
        if k is not None:
            values[row, k] = v
            present[row, k] = True
        else:
            extra = extra or {}
            extra[key] = v
    return extra


class EnvRunner:
    """The envs of one worker and the autoreset rule (``attach`` before use).

    ``faults`` (testing): ``[(kind, env_id, at_step), ...]`` injected when env
    ``env_id`` is about to take step ``at_step``: ``"sim_error"`` makes its state
    non-finite (the real simulator-failure path), ``"exception"`` raises in the env,
    ``"kill"`` SIGKILLs this worker, ``"hang"`` blocks it (for ``step_timeout``).
    """

    def __init__(self, env_ids, env_kwargs, autoreset_mode, faults=()):
        self.a = None
        self.mode = autoreset_mode
        self.envs = {int(i): make_env(env_kwargs) for i in env_ids}
        self.needs_reset = {i: False for i in self.envs}
        self.faults = {(int(i), int(k)): kind for kind, i, k in faults}

    def _inject(self, i: int):
        kind = self.faults.pop((i, int(self.a.steps[i])), None)
        if kind is None:
            return
        if kind == "sim_error":
            sim = self.envs[i].sim
            q = sim.state.getQ().to_numpy().copy()
            q[:] = np.nan
            import opensim
            sim.state.setQ(opensim.Vector.createFromMat(q))
        elif kind == "exception":
            raise RuntimeError(f"injected exception in env {i}")
        elif kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif kind == "hang":
            import time
            time.sleep(3600)

    def get_states(self, ids):
        return [(self.envs[i].get_state(), self.needs_reset[i]) for i in ids]

    def set_states(self, ids, states):
        for i, (state, needs_reset) in zip(ids, states):
            self.envs[i].set_state(state)
            self.needs_reset[i] = needs_reset

    def mark_done(self, ids):
        """NEXT_STEP: make the next step of these envs a reset (after a restart)."""
        if self.mode == NEXT_STEP:
            for i in ids:
                self.needs_reset[i] = True

    @property
    def spaces(self):
        env = next(iter(self.envs.values()))
        return env.observation_space, env.action_space

    def reset(self, i: int):
        a = self.a
        seed = int(a.seed[i]) if a.seed_set[i] else None
        options = {"start_frame": int(a.start_frame[i])} if a.start_frame[i] >= 0 else None
        a.seed_set[i], a.start_frame[i] = False, -1   # used once: autoresets continue the RNG
        obs, info = self.envs[i].reset(seed=seed, options=options)
        a.obs[i] = obs
        a.reward[i] = 0.0
        a.terminated[i] = a.truncated[i] = a.final[i] = False
        self.needs_reset[i] = False
        return _write_info(a.info, a.info_present, i, info)

    def step(self, i: int):
        a, env = self.a, self.envs[i]
        a.final[i] = False
        if self.mode == NEXT_STEP and self.needs_reset[i]:
            extra = self.reset(i)   # the action is ignored, as in Gymnasium
            return extra
        if self.mode == DISABLED and self.needs_reset[i]:
            raise RuntimeError(f"env {i} ended and autoreset is disabled: reset it with "
                               f"reset(options={{'reset_mask': ...}}) before stepping")
        if self.faults:
            self._inject(i)
        obs, reward, terminated, truncated, info = env.step(a.actions[i])
        a.steps[i] += 1
        done = terminated or truncated
        if self.mode == SAME_STEP and done:
            a.final_obs[i] = obs
            a.final_reward[i] = reward
            final_extra = _write_info(a.final_info, a.final_info_present, i, info)
            extra = self.reset(i)
            a.final[i] = True
            a.reward[i] = reward
            a.terminated[i], a.truncated[i] = terminated, truncated
            if final_extra:
                extra = dict(extra or {}, final_info_extra=final_extra)
            return extra
        a.obs[i] = obs
        a.reward[i] = reward
        a.terminated[i], a.truncated[i] = terminated, truncated
        self.needs_reset[i] = done
        return _write_info(a.info, a.info_present, i, info)

    def close(self):
        for env in self.envs.values():
            env.close()


def worker_main(conn, env_ids, env_kwargs: dict, autoreset_mode: str, faults=()):
    """Entry point of a worker process.

    Start-up: build the envs and report their spaces (``("spaces", ...)``), receive
    ``("attach", shm_name, spec)``, map the shared segment, report ``("ready", pid)``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes us
    arrays = runner = None
    try:
        runner = EnvRunner(env_ids, env_kwargs, autoreset_mode, faults)
        conn.send(("spaces", runner.spaces))
        msg = conn.recv()
        if msg[0] != "attach":
            return
        arrays = runner.a = SharedArrays(msg[2], name=msg[1])
        conn.send(("ready", os.getpid()))
    except (EOFError, OSError):
        return  # parent gone during start-up
    except Exception as exc:  # report construction errors to the parent verbatim
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    try:
        while True:
            try:
                msg = conn.recv_bytes()
            except (EOFError, OSError):
                break  # parent gone
            cmd = msg[:1]
            if cmd in (b"S", b"R"):
                ids = np.frombuffer(msg, dtype=np.int32, offset=1)
                fn = runner.step if cmd == b"S" else runner.reset
                for i in ids:
                    i = int(i)
                    try:
                        extra = fn(i)
                    except Exception as exc:
                        extra = {"worker_exception": f"{type(exc).__name__}: {exc}"}
                    conn.send_bytes(_ID.pack(i) + (pickle.dumps(extra) if extra else b""))
            elif cmd == b"P":
                what, args = pickle.loads(msg[1:])
                if what == "close":
                    conn.send_bytes(pickle.dumps((True, None)))
                    break
                try:
                    conn.send_bytes(pickle.dumps((True, _rare(runner, what, args))))
                except Exception as exc:
                    conn.send_bytes(pickle.dumps((False, f"{type(exc).__name__}: {exc}")))
    finally:
        try:
            runner.close()
        except Exception:
            pass
        if arrays is not None:
            arrays.close()


def _rare(runner: EnvRunner, what: str, args):
    ids = args[0]
    if what == "get_states":
        return runner.get_states(ids)
    if what == "set_states":
        runner.set_states(ids, args[1])
        return None
    if what == "mark_done":
        runner.mark_done(ids)
        return None
    name = args[1]
    envs = [runner.envs[i] for i in ids]
    if what == "get_attr":
        return [getattr(e, name) for e in envs]
    if what == "set_attr":
        for e, v in zip(envs, args[2]):
            setattr(e, name, v)
        return None
    if what == "call":
        out = []
        for e in envs:
            attr = getattr(e, name)
            out.append(attr(*args[2], **args[3]) if callable(attr) else attr)
        return out
    raise ValueError(f"unknown command {what!r}")
