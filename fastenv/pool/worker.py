"""Worker process: owns several envs, steps them on command, writes shared memory.

Start-up (pickled messages): the worker sends ``("started", pid)`` as soon as it runs,
builds its envs with the pool's env factory, sends ``("spaces", observation_space,
action_space, info_scalars, warnings)`` (the warnings the build raised, as
``(category name, message)``, for the parent to raise once), receives ``("attach",
shm_name, spec)``, maps the shared segment and sends ``("ready", pid)``. A failure is
sent as ``("error", what_failed, exc_type, message, traceback)`` instead.

Protocol after start-up (parent -> worker, one message per command, ``send_bytes``):
  ``b"S" + int32 env ids``  step those envs with their rows of ``actions``
  ``b"R" + int32 env ids``  reset them (seed/options from shared rows)
  ``b"s"`` / ``b"r"``       the same, answered with one message for all of them
  ``b"P" + pickle``         a rare command: call / get_attr / set_attr / timers /
                            get_states / set_states (recycling) / mark_done (after a
                            respawn) / close
Worker -> parent: for ``S``/``R``, one message per finished env, ``int32 env id``
plus, only when the env produced non-scalar info (e.g. a ``sim_error`` message) or
raised (``worker_exception``), a pickled dict; for ``s``/``r``, one message of
``(int32 env id, uint32 length, pickled dict or nothing)`` records, in stepping
order. Replies to ``P`` commands are a pickled ``(ok, value)``. Per-env completion
messages are what lets the parent return the first finished envs (envpool-style
``recv``); a synchronous step needs every env anyway, and one message per worker
spares the parent a wake-up per env (it shares the cores with the workers). After
each env the worker writes the time into the shared ``progress`` row, so that a worker
busy with a long batch is not taken for a hung one.

Nothing here knows the env class: envs come from the factory, and the scalar infos
carried in shared memory are whatever the env declares in ``info_scalars``.
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import time
import traceback
import warnings

import numpy as np
from gymnasium.vector import AutoresetMode

from fastenv.pool.shared import SharedArrays

_ID = struct.Struct("<i")
RECORD = struct.Struct("<iI")   # a batched reply's record: env id, pickled extra's length


def _record(exc: BaseException) -> tuple[str, str, str]:
    """``(type name, message, traceback)``: what the parent needs to re-raise it."""
    return type(exc).__name__, str(exc), traceback.format_exc()


class _EnvFailure(Exception):
    """An exception raised by one env (building it, or in a rare command), with its id."""

    def __init__(self, env_id: int, exc: BaseException):
        super().__init__(env_id)
        self.env_id, self.record = env_id, _record(exc)


def info_scalars_of(env) -> tuple:
    """The env's ``info_scalars`` (also through wrappers) as ``((name, dtype str), ...)``."""
    scalars = getattr(env, "info_scalars", None)
    if scalars is None:
        scalars = getattr(getattr(env, "unwrapped", None), "info_scalars", None) or {}
    return tuple((str(k), np.dtype(t).str) for k, t in dict(scalars).items())


class EnvRunner:
    """The envs of one worker and the autoreset rule (``attach`` before use).

    ``faults`` (testing): ``[(kind, env_id, at_step), ...]`` injected when env
    ``env_id`` is about to take step ``at_step``: ``"exception"`` raises in the env,
    ``"kill"`` SIGKILLs this worker, ``"hang"`` blocks it (for ``step_timeout``), and a
    callable kind is called with the env (e.g. to corrupt its simulator state).
    """

    def __init__(self, env_ids, env_fn, autoreset_mode, faults=()):
        self.a = None
        self.mode = AutoresetMode(autoreset_mode)
        self.envs = {}
        for i in env_ids:
            try:
                self.envs[int(i)] = env_fn()
            except Exception as exc:
                raise _EnvFailure(int(i), exc) from exc
        self.needs_reset = {i: False for i in self.envs}
        self.faults = {(int(i), int(k)): kind for kind, i, k in faults}
        self.info_scalars = info_scalars_of(next(iter(self.envs.values())))
        self._key = {k: j for j, (k, _) in enumerate(self.info_scalars)}
        # where this worker's time goes, for the sync-barrier analysis (Pool.timers):
        # seconds waiting for a command, inside env steps/resets, sending completions;
        # and the env calls made
        self.clock = [0.0, 0.0, 0.0, 0]

    def attach(self, arrays: SharedArrays):
        self.a = arrays
        # field views, looked up once: writing a scalar info is one indexed store
        self._cols = [arrays.info[k] for k, _ in self.info_scalars]
        self._final_cols = [arrays.final_info[k] for k, _ in self.info_scalars]

    def _write_info(self, final: bool, row: int, info) -> dict | None:
        """Scalars into shared rows; returns the rest (sent with the completion message)."""
        cols = self._final_cols if final else self._cols
        present = self.a.final_info_present if final else self.a.info_present
        present[row] = False
        extra = None
        for key, v in info.items():
            k = self._key.get(key)
            if k is not None:
                cols[k][row] = v
                present[row, k] = True
            else:
                extra = extra or {}
                extra[key] = v
        return extra

    def _inject(self, i: int):
        kind = self.faults.pop((i, int(self.a.steps[i])), None)
        if kind is None:
            return
        if callable(kind):
            kind(self.envs[i])
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
        for i, (state, needs_reset) in zip(ids, states, strict=True):
            self.envs[i].set_state(state)
            self.needs_reset[i] = needs_reset

    def mark_done(self, ids):
        """NEXT_STEP: make the next step of these envs a reset (after a restart)."""
        if self.mode == AutoresetMode.NEXT_STEP:
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
        return self._write_info(False, i, info)

    def step(self, i: int):
        a, env = self.a, self.envs[i]
        a.final[i] = False
        if self.mode == AutoresetMode.NEXT_STEP and self.needs_reset[i]:
            return self.reset(i)   # the action is ignored, as in Gymnasium
        if self.mode == AutoresetMode.DISABLED and self.needs_reset[i]:
            raise RuntimeError(f"env {i} ended and autoreset is disabled: reset it with "
                               f"reset(options={{'reset_mask': ...}}) before stepping")
        if self.faults:
            self._inject(i)
        obs, reward, terminated, truncated, info = env.step(a.actions[i])
        a.steps[i] += 1
        done = terminated or truncated
        if self.mode == AutoresetMode.SAME_STEP and done:
            a.final_obs[i] = obs
            a.final_reward[i] = reward
            final_extra = self._write_info(True, i, info)
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
        return self._write_info(False, i, info)

    def close(self):
        for env in self.envs.values():
            env.close()


def _die_with_parent(parent_pid: int, pdeathsig: bool):
    """End this worker when the pool's process dies, even mid-step (the pipe EOF only
    ends an idle worker).

    ``pdeathsig`` (``parent_pid`` is our parent and started us from its main thread):
    the kernel SIGKILLs us at once, even if a step is stuck in C code; Linux's
    PR_SET_PDEATHSIG follows the *thread* that started us, hence the main thread
    only. In every case a daemon thread waits on a pidfd of the pool's process (polls
    where pidfds are missing) and exits: that covers pools started from other threads
    and forkserver's workers, whose parent is the server, which they keep alive.
    """
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)   # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent_pid:   # the parent died before prctl took effect
            os._exit(0)
    try:
        fd = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        fd = None

    def watch():
        if fd is not None:
            import select
            select.select([fd], [], [])   # readable once the process has exited
        else:
            import time
            while True:
                time.sleep(1.0)
                try:
                    os.kill(parent_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
        os._exit(0)

    import threading
    threading.Thread(target=watch, name="fastenv-parent-watch", daemon=True).start()


def serve(conn, parent_pid: int, pdeathsig: bool):
    """Entry point of a worker started by the pool's ``subprocess`` launcher, after its
    boot code set ``sys.path``: receive the config, run ``worker_main``, and exit
    without the interpreter's teardown (as multiprocessing's workers do), which
    with OpenSim loaded costs about 0.3 s."""
    _die_with_parent(parent_pid, pdeathsig)
    code = 0
    try:
        env_fn, env_ids, autoreset_mode, faults = conn.recv()
    except (EOFError, OSError):
        env_fn = None
    except Exception as exc:   # e.g. a factory defined in the parent's __main__
        _send_quietly(conn, ("error", "could not load its env factory", *_record(exc)))
        env_fn = None
    try:
        if env_fn is not None:
            worker_main(conn, env_fn, env_ids, autoreset_mode, faults)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def worker_main(conn, env_fn, env_ids, autoreset_mode, faults=(), parent=None):
    """Run a worker: start-up handshake (module docstring), then the command loop.
    ``parent``: ``(pid of the pool's process, pdeathsig)``, see ``_die_with_parent``
    (``serve`` has done it already for the ``subprocess`` launcher)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes us
    if parent is not None:
        _die_with_parent(*parent)
    arrays = runner = None
    try:
        conn.send(("started", os.getpid()))
        # warnings of the build (a reference file's notes) go to the parent, which
        # raises each once at the caller's line; printed here, every worker would print
        # its own copy, and the caller could neither catch nor filter them
        with warnings.catch_warnings(record=True) as caught:
            runner = EnvRunner(env_ids, env_fn, autoreset_mode, faults)
        notes = list(dict.fromkeys((w.category.__name__, str(w.message)) for w in caught))
        conn.send(("spaces", *runner.spaces, runner.info_scalars, notes))
        msg = conn.recv()
        if msg[0] != "attach":
            return
        arrays = SharedArrays(msg[2], name=msg[1])
        runner.attach(arrays)
        conn.send(("ready", os.getpid()))
    except (EOFError, OSError):
        return  # parent gone during start-up
    except _EnvFailure as exc:
        _send_quietly(conn, ("error", f"failed to build env {exc.env_id}", *exc.record))
        return
    except Exception as exc:  # report start-up errors to the parent verbatim
        _send_quietly(conn, ("error", "failed to start", *_record(exc)))
        return
    clock = runner.clock
    try:
        while True:
            t0 = time.perf_counter()
            try:
                msg = conn.recv_bytes()
            except (EOFError, OSError):
                break  # parent gone
            t1 = time.perf_counter()
            clock[0] += t1 - t0
            cmd = msg[:1]
            if cmd in (b"S", b"R", b"s", b"r"):
                ids = np.frombuffer(msg, dtype=np.int32, offset=1)
                fn = runner.step if cmd in (b"S", b"s") else runner.reset
                batch = [] if cmd in (b"s", b"r") else None
                for i in ids:
                    i = int(i)
                    try:
                        extra = fn(i)
                    except Exception as exc:
                        extra = {"worker_exception": _record(exc)}
                    t2 = time.perf_counter()
                    arrays.progress[i] = time.monotonic()
                    payload = pickle.dumps(extra) if extra else b""
                    if batch is None:
                        conn.send_bytes(_ID.pack(i) + payload)
                    else:
                        batch.append(RECORD.pack(i, len(payload)) + payload)
                    t3 = time.perf_counter()
                    clock[1] += t2 - t1
                    clock[2] += t3 - t2
                    t1 = t3
                if batch is not None:
                    conn.send_bytes(b"".join(batch))
                    clock[2] += time.perf_counter() - t1
                clock[3] += len(ids)
            elif cmd == b"P":
                what, args = pickle.loads(msg[1:])
                if what == "close":
                    conn.send_bytes(pickle.dumps((True, None)))
                    break
                try:
                    reply = (True, _rare(runner, what, args))
                except _EnvFailure as exc:   # one env's call failed: name it
                    reply = (False, (exc.env_id, *exc.record))
                except Exception as exc:
                    reply = (False, (None, *_record(exc)))
                conn.send_bytes(_pickled_reply(reply, args))
    finally:
        try:
            runner.close()
        except Exception:
            pass
        if arrays is not None:
            arrays.close()


def _send_quietly(conn, msg):
    try:
        conn.send(msg)
    except (OSError, ValueError):
        pass


def _pickled_reply(reply, args) -> bytes:
    """``reply`` pickled for the parent; a value that cannot be (``get_attr("sim")``: an
    OpenSim object) becomes an error naming the env and the value's type, and the
    worker goes on."""
    try:
        return pickle.dumps(reply)
    except Exception as exc:
        values = reply[1] if reply[0] and isinstance(reply[1], list) else []
        for i, value in zip(args[0], values):
            try:
                pickle.dumps(value)
            except Exception:
                wrong = TypeError(f"the value is a {type(value).__name__}, which "
                                  f"cannot be sent to the parent process ({exc}); expected "
                                  "a picklable value, e.g. from a method that returns arrays")
                return pickle.dumps((False, (i, *_record(wrong))))
        return pickle.dumps((False, (None, *_record(exc))))


def _per_env(ids, fn):
    out = []
    for i in ids:
        try:
            out.append(fn(i))
        except Exception as exc:
            raise _EnvFailure(i, exc) from exc
    return out


def _rare(runner: EnvRunner, what: str, args):
    ids = args[0]
    if what == "get_states":
        return _per_env(ids, lambda i: runner.get_states([i])[0])
    if what == "set_states":
        states = dict(zip(ids, args[1], strict=True))
        _per_env(ids, lambda i: runner.set_states([i], [states[i]]))
        return None
    if what == "mark_done":
        runner.mark_done(ids)
        return None
    if what == "timers":
        waiting, busy, sending, calls = runner.clock
        return [dict(waiting_s=waiting, busy_s=busy, sending_s=sending, calls=calls)
                for _ in ids]
    name = args[1]
    if what == "has_attr":
        return [hasattr(runner.envs[i], name) for i in ids]
    if what == "get_attr":
        return _per_env(ids, lambda i: getattr(runner.envs[i], name))
    if what == "set_attr":
        values = dict(zip(ids, args[2], strict=True))
        _per_env(ids, lambda i: setattr(runner.envs[i], name, values[i]))
        return None
    if what == "call":
        def call(i):
            attr = getattr(runner.envs[i], name)
            return attr(*args[2], **args[3]) if callable(attr) else attr
        return _per_env(ids, call)
    raise ValueError(f"unknown pool command {what!r}; expected get_states, set_states, timers, "
                     "mark_done, has_attr, get_attr, set_attr or call")
