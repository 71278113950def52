"""The exceptions of the vector env and its process pool, one definition each.

Each subclasses ``RuntimeError``, which the code raised before these types existed, so
``except RuntimeError`` keeps working; ``ClosedEnvError`` is also Gymnasium's
``ClosedEnvironmentError``, so code written for Gymnasium's vector envs catches it.
Messages are one line naming the bad value and what was expected. An exception raised
in a worker carries its traceback from the worker as a note (shown below the
message) and as ``remote_traceback``.
"""
from __future__ import annotations

from gymnasium.error import ClosedEnvironmentError


def warn_caller(message: str, category=UserWarning):
    """``warnings.warn`` attributed to the first frame outside fastenv and Gymnasium:
    the user's line that made the env, however deep (``gym.make``, a vector env) the
    call came from."""
    import sys
    import warnings
    level, frame = 2, sys._getframe(1)   # 2: warn_caller's caller
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in (
            "fastenv", "gymnasium"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def one_line(text: str) -> str:
    """Join a (possibly multi-line, e.g. OpenSim's) message into one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class ClosedEnvError(RuntimeError, ClosedEnvironmentError):
    """A call on a vector env or pool after ``close()``."""


class PendingCallError(RuntimeError):
    """A call that does not fit the steps in flight: ``step_wait()`` without
    ``step_async()``, ``recv()`` without enough ``send()``, or ``reset``/``call``/
    ``step_async`` while steps are in flight."""


class WorkerError(RuntimeError):
    """A worker failed to start (its envs could not be built, it died during start-up)
    or could not be recovered after a crash."""

    def __init__(self, message: str, remote_traceback: str | None = None):
        super().__init__(message)
        self.remote_traceback = remote_traceback
        if remote_traceback:
            self.add_note("worker traceback:\n" + remote_traceback.rstrip())

    def __reduce__(self):
        return type(self), (self.args[0], self.remote_traceback)


class EnvError(RuntimeError):
    """A Python exception raised by an env inside its worker (a bug in the env or in
    its options, not a simulator failure, which truncates the episode instead).

    ``env_id``: the env (None when it was not an env's own call); ``exc_type`` and
    ``exc_message``: the original exception; ``during``: the command, when not a step
    or reset (e.g. ``"call('render')"``).
    """

    def __init__(self, env_id: int | None, exc_type: str, exc_message: str,
                 remote_traceback: str | None = None, during: str | None = None):
        who = f"env {env_id} raised in its worker" if env_id is not None else "a worker raised"
        where = f" in {during}" if during else ""
        super().__init__(f"{who}{where}: {exc_type}: {one_line(exc_message)}")
        self.env_id, self.exc_type, self.exc_message = env_id, exc_type, exc_message
        self.remote_traceback, self.during = remote_traceback, during
        if remote_traceback:
            self.add_note("worker traceback:\n" + remote_traceback.rstrip())

    def __reduce__(self):
        return type(self), (self.env_id, self.exc_type, self.exc_message,
                            self.remote_traceback, self.during)


class EnvAttributeError(EnvError, AttributeError):
    """An env has no attribute of the name asked for (``get_attr``, ``call``): an
    :class:`EnvError` with its worker's details that is also the ``AttributeError`` a
    local env raises (SB3's ``has_attr`` and ``except AttributeError`` rely on it)."""


class EnvValueError(EnvError, ValueError):
    """An env refused a value inside its worker (a reset option, an attribute set to a bad
    value): an :class:`EnvError` that is also the ``ValueError`` a local env raises, so
    that ``except ValueError`` works the same for one env and for many."""


class WorkerValueError(WorkerError, ValueError):
    """A worker could not build its envs because a value was refused (an env option
    checked only where the model is loaded, a file that does not load): a
    :class:`WorkerError` that is also the ``ValueError`` ``gym.make`` raises."""


def env_error(env_id, exc_type: str, exc_message: str, remote_traceback=None, during=None,
              attribute_lookup: bool = False) -> EnvError:
    """The :class:`EnvError` for an exception of type ``exc_type`` raised in a worker: a
    ``ValueError`` stays one, and so does a missing attribute asked for by name
    (``attribute_lookup``: ``call``, ``get_attr``; SB3's ``has_attr`` relies on it)."""
    cls = (EnvAttributeError if exc_type == "AttributeError" and attribute_lookup
           else EnvValueError if exc_type == "ValueError" else EnvError)
    return cls(env_id, exc_type, exc_message, remote_traceback, during=during)


__all__ = ["ClosedEnvError", "PendingCallError", "WorkerError", "WorkerValueError",
           "EnvError", "EnvValueError", "EnvAttributeError", "env_error"]
