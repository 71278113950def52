"""Frames/s of ``env.render()`` (render_mode="rgb_array") in one process.

Per task and view: an ``ImitationEnv`` stepped with seeded random actions (resets
after falls), ``render()`` timed alone on every step after a warm-up, and the same
loop's rate with the steps included. With ``--matplotlib``, one frame of the same
bone triangles through matplotlib's 3D axes (Poly3DCollection on Agg), the pure-PyPI
alternative to the rasterizer. The load average is recorded before and after, since
the figures depend on what else the machine runs.

    python bench/render.py [--frames 200] [--matplotlib] [--out bench/results]
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

CASES = [("MuscleWalkingImitation2D-v0", None, (640, 480)),
         ("TorqueWalkingImitation2D-v0", None, (640, 480)),
         ("MuscleWalkingImitation3D-v0", "oblique", (640, 480)),
         ("MuscleWalkingImitation3D-v0", "front", (640, 480)),
         ("MusclePalsyImitation3D-v0", "oblique", (640, 480)),
         ("MuscleWalkingImitation2D-v0", None, (1280, 720))]


def measure(task: str, view, size, frames: int) -> dict:
    from fastenv.env import ImitationEnv

    env = ImitationEnv(task, mode="test", render_mode="rgb_array", render_view=view,
                       render_size=size)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
        env.render()                               # warm-up: meshes parsed, buffers built
    render_s, t0 = 0.0, time.perf_counter()
    for _ in range(frames):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
        t = time.perf_counter()
        frame = env.render()
        render_s += time.perf_counter() - t
    total = time.perf_counter() - t0
    r = env.renderer
    row = dict(task=task, view=view or ("side" if env.spec_task.planar else "oblique"),
               width=size[0], height=size[1], frames=frames,
               triangles=int(len(r._model_bones.triangles)), render_fps=frames / render_s,
               render_ms=1e3 * render_s / frames, step_and_render_fps=frames / total,
               frame_shape=list(frame.shape))
    env.close()
    return row


def simplification(task: str, steps: int = 20) -> dict:
    """The clustered meshes against the full ones on one frame: triangles, and the
    pixels whose coverage by the model's bones differs (its silhouette)."""
    import fastenv.render as fr
    from fastenv.env import ImitationEnv
    env = ImitationEnv(task, mode="test", render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(steps):
        env.step(np.zeros(env.action_space.shape, np.float32))
    env.render()
    clustered = env.renderer.model_mask.copy()
    triangles = len(env.renderer._model_bones.triangles)
    keep = fr.simplify
    fr.simplify = lambda points, tri, cell: (points, tri)
    try:
        env._renderer = None
        env.render()
        full = env.renderer.model_mask.copy()
        full_triangles = len(env.renderer._model_bones.triangles)
    finally:
        fr.simplify = keep
    env.close()
    return dict(task=task, triangles=triangles, full_triangles=full_triangles,
                model_pixels=int(full.sum()),
                silhouette_pixels_differing=int((full ^ clustered).sum()))


def matplotlib_frame(task: str) -> dict:
    """Seconds for one 640 x 480 frame of the model's bone triangles with mplot3d."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from fastenv.env import ImitationEnv
    env = ImitationEnv(task, mode="test", render_mode="rgb_array")
    env.reset(seed=0)
    r = env.renderer
    env.render()
    T = env.sim.frame_transforms()
    world = np.empty_like(r._model_bones.local)
    for frame, v0, v1 in r._model_bones.vertex_ranges:
        world[v0:v1] = r._model_bones.local[v0:v1] @ T[frame, :, :3].T + T[frame, :, 3]
    times = []
    for _ in range(2):
        t = time.perf_counter()
        fig = plt.figure(figsize=(6.4, 4.8), dpi=100)
        ax = fig.add_subplot(projection="3d")
        ax.add_collection3d(Poly3DCollection(world[r._model_bones.triangles][:, :, [0, 2, 1]],
                                             facecolor="0.85", edgecolor="none"))
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(0, 2))
        fig.canvas.draw()
        np.asarray(fig.canvas.buffer_rgba())
        plt.close(fig)
        times.append(time.perf_counter() - t)
    env.close()
    return dict(task=task, triangles=int(len(r._model_bones.triangles)),
                seconds_per_frame=min(times), fps=1.0 / min(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--matplotlib", action="store_true",
                    help="also time one frame with matplotlib's 3D axes")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    rows = []
    for task, view, size in CASES:
        rows.append(measure(task, view, size, args.frames))
        print({k: round(v, 1) if isinstance(v, float) else v for k, v in rows[-1].items()},
              flush=True)
    result = dict(cores=os.cpu_count(), machine=platform.machine(),
                  load_average_before=load_before, load_average_after=os.getloadavg(),
                  numpy=np.__version__, rows=rows)
    result["simplification"] = simplification("MuscleWalkingImitation2D-v0")
    print(result["simplification"], flush=True)
    if args.matplotlib:
        result["matplotlib"] = matplotlib_frame("MuscleWalkingImitation3D-v0")
        print(result["matplotlib"], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "render.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'render.json'}")


if __name__ == "__main__":
    main()
