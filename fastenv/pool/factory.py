"""``EnvFactory``: a picklable recipe for an env, built inside a worker."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EnvFactory:
    """``EnvFactory("package.module:Class", {"option": 1})()`` imports the entry point
    and calls it with ``kwargs``.

    The parent only pickles the entry point's name, so it never imports the env's
    module (for fastenv's envs, OpenSim); each worker imports it when it builds its
    envs. Any other picklable callable returning an env works as a pool's factory too,
    as long as workers can import it (not from ``__main__``: workers do not run the
    parent's main module).
    """

    entry_point: str
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        module, sep, attr = self.entry_point.partition(":")
        if not (module and sep and attr):
            raise ValueError(f"entry_point must be 'module:attribute', got "
                             f"{self.entry_point!r}")

    @property
    def module(self) -> str:
        """The module that defines the entry point (forkserver preloads it)."""
        return self.entry_point.partition(":")[0]

    def __call__(self):
        module, _, attr = self.entry_point.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj(**self.kwargs)
