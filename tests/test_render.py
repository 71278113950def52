"""Rendering: frames checked by their pixels, videos by decoding them, and the ways in
(``render_mode``, ``visualize``, ``fastenv render``, RecordVideo, the vector env)."""
import base64
import zlib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import fastenv  # noqa: F401  (registers the tasks)
from fastenv.env import ImitationEnv
from fastenv.envs import TASKS
from fastenv.render import VIEWS, read_vtp
from fastenv.vector import OsimVectorEnv

TASK = "MuscleWalkingImitation2D-v0"
#: a committed run, a policy to render
POLICY_RUN = Path(__file__).resolve().parents[1] / "baselines" / "runs" / "torque2d_ppo"
#: one task per model variant
VARIANT_TASKS = list({spec.model: task for task, spec in reversed(TASKS.items())}.values())


def _env(task=TASK, **options):
    return ImitationEnv(task, mode="test", render_mode="rgb_array", **options)


def _warm(frame, box):
    """Bone pixels (ivory: red above blue) in ``frame[box]``."""
    patch = frame[box].astype(int)
    return (patch[..., 0] - patch[..., 2]) > 12


def _headless(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------------- frames
def test_frame_shows_the_model_where_its_bodies_project():
    env = _env()
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (480, 640, 3)
    assert env.metadata["render_fps"] == 100 and "rgb_array" in env.metadata["render_modes"]
    r, sim = env.renderer, env.sim
    model = r.frame()                          # the same pose without the ghost over it
    bodies = sim.buf[sim.layout.slice("body_pos")].reshape(-1, 3)
    pixels = r.project(bodies)
    mask = r.model_mask
    for name, (x, y, _), height in zip(sim.body_names, pixels, bodies[:, 1]):
        assert 0 <= x < 640 and 0 <= y < 480, name
        if height < -0.01:
            # a joint centre sunk into the floor (a loaded toe on its compliant
            # contact sphere) is hidden by the floor, as it should be
            continue
        box = np.s_[int(y) - 6:int(y) + 7, int(x) - 6:int(x) + 7]
        assert mask[box].any() and _warm(model, box).any(), f"no bone pixels at {name}"
    ys, xs = np.nonzero(mask)
    # the bones lie around the bodies, not elsewhere in the picture
    assert pixels[:, 0].min() - 60 < xs.min() and xs.max() < pixels[:, 0].max() + 60
    assert pixels[:, 1].min() - 120 < ys.min() and ys.max() < pixels[:, 1].max() + 40
    assert not _warm(model, np.s_[:, :max(xs.min() - 20, 1)]).any()
    env.close()


def test_floor_labels_are_whole_or_not_drawn():
    """A metre label cut at the image's edge is not drawn: "-1 m" cut to "1 m" would
    name the wrong mark."""
    env = _env()
    env.reset(seed=0)
    r = env.renderer
    assert r.fits("-1 m", 0, 0) and r.fits("12 m", 560, 450)
    assert not r.fits("-1 m", -4, 10) and not r.fits("12 m", 620, 10)
    assert not r.fits("1 m", 10, 475) and not r.fits("1 m", float("nan"), 10)
    written = []
    r.text = lambda text, x, y, *a, **k: written.append((text, x, y))
    r.frame()
    assert written and all(r.fits(text, x, y) for text, x, y in written)
    env.close()


def test_frame_changes_when_the_model_moves():
    env = _env("TorqueWalkingImitation2D-v0")
    env.reset(seed=0)
    first = env.render()
    assert np.array_equal(first, env.render())            # same state, same picture
    for _ in range(10):
        env.step(env.action_space.sample() * 0)
    moved = env.render()
    assert (np.abs(moved.astype(int) - first).sum(axis=2) > 30).sum() > 500
    env.close()


def test_ghost_separates_when_the_policy_leaves_the_reference():
    """At the reference's start the ghost covers the model; zero excitation makes the
    model sag while the reference walks on, and the two part."""
    env = _env()
    env.reset(seed=0)
    frame = env.render()
    r = env.renderer
    model, ghost = r.model_mask, r.ghost_mask
    assert (model & ghost).sum() / (model | ghost).sum() > 0.7
    pixels = frame[ghost & ~model].astype(int)    # ghost over sky and floor: blue
    assert (pixels[:, 2] - pixels[:, 0]).mean() > 20
    for _ in range(60):
        _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape, np.float32))
        if terminated or truncated:
            break
    env.render()
    model, ghost = r.model_mask, r.ghost_mask
    assert (model & ghost).sum() / (model | ghost).sum() < 0.4
    env.close()


def test_rendering_does_not_change_the_rollout():
    def rollout(render_mode):
        env = ImitationEnv("TorqueWalkingImitation2D-v0", render_mode=render_mode)
        obs = [env.reset(seed=3)[0]]
        rng = np.random.default_rng(0)
        for _ in range(15):
            obs.append(env.step(rng.uniform(-1, 1, env.action_space.shape))[0])
            if render_mode:
                env.render()
        env.close()
        return np.array(obs)
    np.testing.assert_array_equal(rollout(None), rollout("rgb_array"))


@pytest.mark.parametrize("task", VARIANT_TASKS)
def test_every_model_variant_renders(task):
    """One task per model variant (the slow suite renders all 17), 3D in every view."""
    env = _env(task, render_size=(160, 120))
    env.reset(seed=0)
    views = [VIEWS["side"]] if TASKS[task].planar else [*VIEWS.values(), (20.0, 30.0)]
    for view in views:
        env.renderer.azimuth, env.renderer.elevation = view
        frame = env.render()
        assert frame.shape == (120, 160, 3) and env.renderer.model_mask.sum() > 100, view
    env.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_all_tasks_render(task):
    env = _env(task)
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())
    frame = env.render()
    assert frame.shape == (480, 640, 3) and env.renderer.model_mask.sum() > 2000
    env.close()


def test_render_options_are_checked():
    with pytest.raises(ValueError, match=r"render_view must be one of .*'oblique'.* got 'top'"):
        ImitationEnv(TASK, render_view="top")
    with pytest.raises(ValueError, match="render_size must be"):
        ImitationEnv(TASK, render_size=(0, 480))
    with pytest.raises(ValueError, match="render_mode must be one of"):
        ImitationEnv(TASK, render_mode="ansi")
    with pytest.raises(ValueError, match="contradicts render_mode='rgb_array'"):
        ImitationEnv(TASK, render_mode="rgb_array", visualize=True)
    env = ImitationEnv(TASK)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None
    env.close()


def test_render_before_reset_is_reset_needed():
    """As step() and gym.make's order check: before the first reset there is no episode
    (the frame showed the model's default pose under the reference's first frame)."""
    env = ImitationEnv("TorqueWalkingImitation2D-v0", render_mode="rgb_array",
                       render_size=(64, 48))
    with pytest.raises(gym.error.ResetNeeded, match=r"render\(\) called before reset"):
        env.render()
    env.reset(seed=0)
    assert env.render().shape == (48, 64, 3)
    env.close()


def test_vtp_binary_and_compressed_read_as_ascii(tmp_path):
    """The bundled meshes are ASCII; VTK's inline binary (raw and zlib) reads the same."""
    from fastenv.envs.variants import mesh_dir
    points, triangles = read_vtp(str(mesh_dir() / "talus.vtp"))
    polys_conn = triangles.ravel().astype(np.int32)
    offsets = np.arange(3, len(polys_conn) + 1, 3, dtype=np.int32)

    def array(values, vtk_type, name, compressed, components=""):
        raw = values.tobytes()
        if compressed:
            body = zlib.compress(raw)
            header = np.array([1, len(raw), len(raw), len(body)], np.uint32).tobytes()
        else:
            body, header = raw, np.array([len(raw)], np.uint32).tobytes()
        text = base64.b64encode(header).decode() + base64.b64encode(body).decode()
        return (f'<DataArray type="{vtk_type}" Name="{name}" {components} '
                f'format="binary">{text}</DataArray>')

    xyz = 'NumberOfComponents="3"'
    for compressed in (False, True):
        compressor = ' compressor="vtkZLibDataCompressor"' if compressed else ""
        xml = (f'<?xml version="1.0"?><VTKFile type="PolyData" version="0.1" '
               f'byte_order="LittleEndian"{compressor}><PolyData>'
               f'<Piece NumberOfPoints="{len(points)}" NumberOfPolys="{len(triangles)}">'
               f'<Points>{array(points.astype(np.float32), "Float32", "", compressed, xyz)}'
               '</Points>'
               f'<Polys>{array(polys_conn, "Int32", "connectivity", compressed)}'
               f'{array(offsets, "Int32", "offsets", compressed)}</Polys>'
               f'</Piece></PolyData></VTKFile>')
        path = tmp_path / f"talus_{compressed}.vtp"
        path.write_text(xml)
        p, t = read_vtp(str(path))
        np.testing.assert_allclose(p, points, rtol=1e-6)
        np.testing.assert_array_equal(t, triangles)


# ----------------------------------------------------------------------- windows
def test_human_mode_without_a_display_is_one_clear_error(monkeypatch):
    _headless(monkeypatch)
    with pytest.raises(ValueError, match="needs a display .* render_mode='rgb_array' .* "
                                         "`fastenv render TASK"):
        gym.make(TASK, render_mode="human")
    with pytest.raises(ValueError, match="needs a display"):
        gym.make(TASK, config=dict(visualize=True))


def test_visualize_true_is_human_mode_and_shows_frames(monkeypatch):
    """SDL's dummy video driver stands in for a display: the window opens, reset and
    step draw into it, render() returns None as Gymnasium's human mode does."""
    pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = gym.make("TorqueWalkingImitation2D-v0", config=dict(visualize=True),
                   render_size=(160, 120))
    assert env.unwrapped.render_mode == "human"
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render() is None and env.unwrapped._window is not None
    env.close()
    assert env.unwrapped._window is None


# ----------------------------------------------------------------------- videos
def _decoded_frames(path):
    if path.suffix == ".gif":
        from PIL import Image
        with Image.open(path) as im:
            return im.n_frames, im.size
    import imageio.v3 as iio
    frames = iio.imread(path)
    return len(frames), (frames.shape[2], frames.shape[1])


@pytest.mark.parametrize("args, suffix, frames", [
    (["TorqueWalkingImitation2D-v0", "--reference", "--seconds", "0.5"], ".mp4", 26),
    (["MuscleWalkingImitation3D-v0", "--random", "--seconds", "0.2", "--fps", "25",
      "--view", "front"], ".gif", 6),
])
def test_fastenv_render_writes_a_video(args, suffix, frames, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg")
    from fastenv.__main__ import main
    out = tmp_path / f"video{suffix}"
    assert main(["render", *args, "--out", str(out), "--width", "320", "--height", "240",
                 "--no-progress"]) == 0
    assert _decoded_frames(out) == (frames, (320, 240))
    assert f"wrote {out}: {frames} frames" in capsys.readouterr().out


def test_fastenv_render_picture_export_and_grf_plot(tmp_path):
    from fastenv.__main__ import main
    out = tmp_path / "last.png"
    assert main(["render", "TorqueWalkingImitation2D-v0", "--random", "--seconds", "0.1",
                 "--out", str(out), "--export", str(tmp_path / "walk.mot"),
                 "--plot-grf", str(tmp_path / "grf.png"), "--plot", str(tmp_path / "q.png"),
                 "--no-progress"]) == 0
    from PIL import Image
    assert Image.open(out).size == (640, 480)
    assert (tmp_path / "walk.mot").is_file()
    assert all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in ("grf.png", "q.png"))


def test_fastenv_render_plays_your_own_motion_file(tmp_path, capsys):
    """--reference with --option reference=<file>: the file's cycle on the task's model."""
    from fastenv.__main__ import main
    from fastenv.references import REFERENCE_DIR, read_motion, write_motion
    time, columns, _ = read_motion(REFERENCE_DIR / "walking2d_coordinates.sto")
    write_motion(tmp_path / "mine.sto", time[:51],     # half a cycle: completed by mirroring
                 {c: v[:51] for c, v in columns.items() if not c.endswith("_speed")},
                 in_degrees=False)
    out = tmp_path / "mine.gif"
    with pytest.warns(UserWarning, match="half a gait cycle"):
        assert main(["render", TASK, "--reference", "--seconds", "0.2", "--out", str(out),
                     "--option", f"reference={tmp_path / 'mine.sto'}", "--option",
                     'reference_options={"cycle": "auto"}', "--width", "160", "--height", "120",
                     "--no-progress"]) == 0
    assert _decoded_frames(out) == (11, (160, 120))


@pytest.mark.parametrize("args, message", [
    (["render", TASK], "choose what moves the model"),
    (["render", TASK, "--reference", "--out", "x.avi"], "--out must end in .mp4, .gif or .png"),
    (["render", TASK, "--reference", "--view", "top"], "the view must be one of"),
    (["render", TASK, "--reference", "--export", "x.mot"], "need a simulated rollout"),
    (["render", TASK, "--reference", "--out", "x.gif", "--fps", "100"], "too fast for a .gif"),
    # over a policy's run options, as for evaluate, but not those its actions depend on
    (["render", "--policy", str(POLICY_RUN), "--option", "pd_targets=range"],
     "option 'pd_targets' is fixed by the run"),
    (["render", TASK, "--random", "--checkpoint", "100"], "--checkpoint picks one of a run's"),
    (["render", TASK, "--reference", "--option", "referense=x.mot"], "with KEY an env option"),
    # imageio stretched odd frames to even ones and the command reported the asked size
    (["render", TASK, "--reference", "--width", "321"], "needs an even --width and --height"),
    (["render", TASK, "--reference", "--width", "10"], "--width and --height must each be"),
    (["render", TASK, "--reference", "--seconds", "inf"], "expected a finite number > 0"),
    (["render", TASK, "--reference", "--view", "0,95"], "the view's elevation"),
    (["render", TASK, "--reference", "--view", "top"], "or AZIMUTH,ELEVATION in degrees"),
])
def test_fastenv_render_input_errors(args, message, capsys, tmp_path, monkeypatch):
    from fastenv.__main__ import main
    monkeypatch.chdir(tmp_path)     # a check that lets one through writes TASK.mp4 here
    try:
        code = main(args)
    except SystemExit as exc:      # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_write_video_refuses_odd_mp4_sizes_and_no_frames(tmp_path):
    """H.264 needs even sides: imageio stretched 321 x 241 frames to 322 x 242."""
    from fastenv.render import write_video
    odd = np.zeros((241, 321, 3), np.uint8)
    with pytest.raises(ValueError, match="even width and height, got 321x241"):
        write_video(tmp_path / "odd.mp4", [odd], 50)
    assert not (tmp_path / "odd.mp4").exists()
    assert write_video(tmp_path / "odd.gif", [odd, odd], 50) == 2
    for suffix in (".mp4", ".gif"):
        with pytest.raises(ValueError, match="no frames to write"):
            write_video(tmp_path / f"none{suffix}", iter([]), 50)


def test_record_video_wrapper(tmp_path):
    pytest.importorskip("moviepy")
    from gymnasium.wrappers import RecordVideo
    env = gym.make("TorqueWalkingImitation2D-v0", render_mode="rgb_array", mode="test",
                   episode_seconds=0.1, render_size=(160, 120))
    env = RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda episode: True,
                      disable_logger=True)
    env.reset(seed=0)
    done = False
    while not done:   # zero actions track the reference: no fall within the 10 steps
        _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape))
        done = terminated or truncated
    assert len(env.recorded_frames) == 11                       # the reset and 10 steps
    env.close()
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1
    n, size = _decoded_frames(videos[0])
    assert size == (160, 120) and n in (10, 11)    # moviepy writes duration x fps frames


# ----------------------------------------------------------------------- vector env
def test_vector_env_renders_every_env_in_its_worker():
    envs = gym.make_vec(TASK, num_envs=3, vectorization_mode="vector_entry_point",
                        num_workers=2, render_mode="rgb_array", render_size=(160, 120))
    try:
        assert envs.metadata["render_modes"] == ["rgb_array"]
        assert envs.render_mode == "rgb_array"
        with pytest.raises(gym.error.ResetNeeded, match=r"render\(\) called on envs \[0, 1, 2\]"):
            envs.render()
        envs.reset(seed=0)                       # train mode: random start frames
        frames = envs.render()
        assert len(frames) == 3
        assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for f in frames)
        assert not np.array_equal(frames[0], frames[1])
    finally:
        envs.close()
    with pytest.raises(gym.error.ClosedEnvironmentError, match="render"):
        envs.render()
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        OsimVectorEnv(TASK, 2, render_mode="human")


def test_views_table_is_the_code():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "rendering.md").read_text()
    for name, (azimuth, elevation) in VIEWS.items():
        row = f'| `"{name}"` | {azimuth:g}, {elevation:g} |'.replace("-", "−")
        assert row in text, row


def test_a_failed_simulation_still_renders():
    """After a simulator failure (non-finite state) the frame keeps its camera and
    shows the ghost; the model's non-finite triangles are dropped."""
    from fastenv.vector import _nan_state
    env = _env("TorqueWalkingImitation2D-v0")
    env.reset(seed=0)
    before = env.render()
    _nan_state(env)
    _, _, _, truncated, info = env.step(env.action_space.sample() * 0)
    assert truncated and "sim_error" in info
    frame = env.render()
    assert frame.shape == before.shape and env.renderer.ghost_mask.sum() > 1000
    env.close()


def test_human_mode_shows_the_failed_step(monkeypatch):
    """A window shows every step, the one that ends in a simulator failure included
    (it showed none for it)."""
    pytest.importorskip("pygame")
    from fastenv.render import Window
    from fastenv.vector import _nan_state
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    shown = []
    monkeypatch.setattr(Window, "show", lambda self, frame: shown.append(frame.shape))
    env = gym.make("TorqueWalkingImitation2D-v0", render_mode="human",
                   render_size=(160, 120)).unwrapped
    env.reset(seed=0)
    env.step(env.action_space.sample() * 0)
    _nan_state(env)
    _, _, _, truncated, info = env.step(env.action_space.sample() * 0)
    assert truncated and "sim_error" in info
    assert len(shown) == 3 and shown[-1] == (120, 160, 3)   # reset, step, failed step
    env.close()


def test_gymnasium_env_checker_passes_with_rendering(monkeypatch):
    """Gymnasium's checker, render checks included: it makes the env in every render
    mode (human through SDL's dummy display)."""
    pytest.importorskip("pygame")
    from gymnasium.utils.env_checker import check_env
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = gym.make("TorqueWalkingImitation2D-v0", render_mode="rgb_array",
                   render_size=(160, 120))
    check_env(env.unwrapped, skip_render_check=False)
    env.close()
