"""Software rendering of an imitation env: frames as NumPy arrays, headless, no OpenGL.

A :class:`Renderer` draws one model state with the ``fastenv._kernels.rasterize``
triangle kernel: the bones from the ``.vtp`` meshes the model names (a small sphere
for a body without one), the reference pose as a translucent ghost, a floor tiled
every metre and labelled with its distance, the ground reaction forces as arrows and,
on muscle models, the muscle paths coloured by activation (blue 0 to red 1). The
camera looks at the pelvis from a fixed direction (:data:`VIEWS`, or azimuth and
elevation in degrees) and follows it over the floor.

Everything OpenGL-based (pyrender, moderngl, VTK) needs system libraries for
headless use (EGL or OSMesa) that a pip install does not bring, and matplotlib's 3D
axes take 0.27 s per frame for the 3D model's 24,208 triangles; a z-buffered,
flat-shaded rasterizer in Cython needs nothing but NumPy and draws a 640 x 480 frame
in a few milliseconds (``bench/render.py``, docs/rendering.md).

:class:`Window` shows frames with pygame (``render_mode="human"``); :func:`write_video`
writes them with imageio-ffmpeg (.mp4) or Pillow (.gif). Both are imported only
when used (the ``render`` extra).
"""
from __future__ import annotations

import base64
import functools
import itertools
import math
import os
import sys
import zlib
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from fastenv import kernels

#: Named camera directions: (azimuth, elevation) in degrees. Azimuth 0 looks at the
#: model's right side (ground +z towards the camera: the sagittal view, walking to the
#: right), 90 at its front (+x), -90 at its back, 180 at its left side.
VIEWS = {"side": (0.0, 6.0), "left": (180.0, 6.0), "front": (90.0, 8.0),
         "back": (-90.0, 8.0), "oblique": (35.0, 15.0)}
FPS = 100                  # one frame per 10 ms control step
FIELD_OF_VIEW = 40.0       # vertical, degrees
NEAR = 0.1                 # m: triangles reaching closer to the camera are dropped
ARROW_M_PER_BODY_WEIGHT = 0.5
GHOST_ALPHA = 0.45
BONE = np.array([232, 224, 204])
GHOST = np.array([70, 140, 255])
MUSCLE_RELAXED, MUSCLE_ACTIVE = np.array([50, 90, 230]), np.array([235, 35, 30])
MUSCLE_UNKNOWN = np.array([190, 110, 110])     # a reference pose: activation not known
GRF_ARROW = np.array([20, 160, 60])
FLOOR = (np.array([205, 205, 200]), np.array([178, 178, 172]))
TEXT = np.array([60, 60, 60])

# 5 x 7 glyphs for the labels (distance marks, time)
_FONT = {
    "0": "01110100011001110101110011000101110", "1": "00100011000010000100001000010001110",
    "2": "01110100010000100010001000100011111", "3": "11111000100010000010000011000101110",
    "4": "00010001100101010010111110001000010", "5": "11111100001111000001000011000101110",
    "6": "00110010001000011110100011000101110", "7": "11111000010001000100010000100001000",
    "8": "01110100011000101110100011000101110", "9": "01110100011000101111000010001001100",
    ".": "00000000000000000000000000110001100", "-": "00000000000000011111000000000000000",
    "m": "00000000001101010101101011000110001", "s": "00000000000111010000011100000111110",
    "t": "01000010001110001000010000100100110", " ": "0" * 35,
}


@functools.cache
def _glyph(ch: str, scale: int) -> np.ndarray:
    bits = np.array([int(b) for b in _FONT[ch]], bool).reshape(7, 5)
    return np.kron(bits, np.ones((scale, scale), bool))


# ----------------------------------------------------------------------- meshes
_VTK_TYPES = {"Float32": "<f4", "Float64": "<f8", "Int8": "<i1", "UInt8": "<u1",
              "Int16": "<i2", "UInt16": "<u2", "Int32": "<i4", "UInt32": "<u4",
              "Int64": "<i8", "UInt64": "<u8"}


def _data_array(node, header_type: str, compressed: bool) -> np.ndarray:
    """One ``DataArray``: ASCII, or inline base64 binary (raw or zlib blocks)."""
    fmt = node.get("format", "ascii")
    dtype = np.dtype(_VTK_TYPES[node.get("type", "Float32")])
    if fmt == "ascii":
        return np.array((node.text or "").split(), dtype=np.float64).astype(dtype)
    if fmt != "binary":
        raise ValueError(f"VTK data format {fmt!r} is not supported; expected 'ascii' or "
                         "inline 'binary' (save the mesh without appended data)")
    text = "".join((node.text or "").split()).encode()
    header = np.dtype(_VTK_TYPES[header_type])

    def decode(chars: bytes, n_bytes: int) -> tuple[bytes, bytes]:
        """The first ``n_bytes`` of base64 text, and the text after their encoding."""
        k = 4 * -(-n_bytes // 3)
        return base64.b64decode(chars[:k]), chars[k:]

    if not compressed:
        raw, rest = decode(text, header.itemsize)
        n = int(np.frombuffer(raw, header)[0])
        return np.frombuffer(base64.b64decode(rest)[:n], dtype).copy()
    raw, rest = decode(text, 3 * header.itemsize)
    n_blocks = int(np.frombuffer(raw, header)[0])
    raw, rest = decode(text, (3 + n_blocks) * header.itemsize)
    sizes = np.frombuffer(raw, header)[3:]
    data, blob, at = b"", base64.b64decode(rest), 0
    for size in sizes:
        data += zlib.decompress(blob[at:at + int(size)])
        at += int(size)
    return np.frombuffer(data, dtype).copy()


@functools.cache
def read_vtp(path) -> tuple[np.ndarray, np.ndarray]:
    """Points (n, 3) float64 and triangles (m, 3) int32 of a VTK XML PolyData file
    (polygons fanned into triangles; triangle strips split); parsed once per process."""
    root = ElementTree.parse(path).getroot()
    if root.get("type") != "PolyData":
        raise ValueError(f"{path} is not VTK PolyData (type={root.get('type')!r})")
    header_type = root.get("header_type", "UInt32")
    compressed = root.get("compressor") is not None
    pieces = root.findall("./PolyData/Piece")
    points, triangles, base = [], [], 0
    for piece in pieces:
        pts = _data_array(piece.find("./Points/DataArray"), header_type,
                          compressed).astype(np.float64).reshape(-1, 3)
        for kind in ("Polys", "Strips"):
            cells = piece.find(kind)
            if cells is None:
                continue
            arrays = {d.get("Name"): _data_array(d, header_type, compressed).astype(np.int64)
                      for d in cells.findall("DataArray")}
            conn, offsets = arrays["connectivity"], arrays["offsets"]
            starts = np.r_[0, offsets[:-1]]
            n_tri = np.maximum(offsets - starts - 2, 0)
            cell = np.repeat(np.arange(len(starts)), n_tri)
            k = np.arange(n_tri.sum()) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
            first = starts[cell]
            if kind == "Polys":      # fan: (v0, v_k+1, v_k+2)
                tri = np.column_stack([conn[first], conn[first + k + 1], conn[first + k + 2]])
            else:                    # strip: (v_k, v_k+1, v_k+2)
                tri = np.column_stack([conn[first + k], conn[first + k + 1], conn[first + k + 2]])
            triangles.append(tri + base)
        points.append(pts)
        base += len(pts)
    if not points:
        raise ValueError(f"{path} has no PolyData piece")
    tri = np.concatenate(triangles) if triangles else np.zeros((0, 3), np.int64)
    return np.concatenate(points), tri.astype(np.int32)


def simplify(points, triangles, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: vertices within one ``cell``-sized grid box merge into their
    mean, and triangles that collapse or repeat are dropped. With cells under a pixel
    the picture is the same and the bone meshes keep about a third of their triangles."""
    keys = np.floor(points / cell).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, inverse, points)
    merged /= counts[:, None]
    tri = inverse[triangles]
    tri = tri[(tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])]
    _, first = np.unique(np.sort(tri, axis=1), axis=0, return_index=True)
    return merged, tri[np.sort(first)].astype(np.int32)


def _icosphere(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A 20-face sphere (bodies without a mesh)."""
    g = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, g, 0], [1, g, 0], [-1, -g, 0], [1, -g, 0], [0, -1, g], [0, 1, g],
                  [0, -1, -g], [0, 1, -g], [g, 0, -1], [g, 0, 1], [-g, 0, -1], [-g, 0, 1]],
                 float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9],
                  [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2],
                  [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10],
                  [8, 6, 7], [9, 8, 1]], np.int32)
    return radius * v / np.linalg.norm(v, axis=1, keepdims=True), f


def parse_view(view, planar: bool) -> tuple[float, float]:
    """(azimuth, elevation) in degrees from a :data:`VIEWS` name or a pair of numbers;
    None: "side" for planar tasks, "oblique" for 3D ones."""
    if view is None:
        view = "side" if planar else "oblique"
    if isinstance(view, str):
        if view not in VIEWS:
            raise ValueError(f"render_view must be one of {sorted(VIEWS)} or [azimuth, "
                             f"elevation] in degrees, got {view!r}")
        return VIEWS[view]
    try:
        azimuth, elevation = (float(x) for x in view)
    except (TypeError, ValueError):
        raise ValueError(f"render_view must be one of {sorted(VIEWS)} or [azimuth, "
                         f"elevation] in degrees, got {view!r}") from None
    if not (math.isfinite(azimuth) and -89.0 <= elevation <= 89.0):
        raise ValueError(f"render_view's elevation must be within [-89, 89] degrees and "
                         f"its azimuth finite, got {view!r}")
    return azimuth, elevation


def parse_size(size) -> tuple[int, int]:
    """(width, height) in pixels, each within [16, 4096]."""
    try:
        width, height = (int(x) for x in size)
        ok = all(16 <= x <= 4096 and x == y for x, y in zip((width, height), size))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"render_size must be [width, height] in pixels, each a whole "
                         f"number within [16, 4096], got {size!r}")
    return width, height


# ----------------------------------------------------------------------- renderer
class _Bones:
    """Meshes grouped by the frame they hang on: vertices in that frame, triangles,
    each triangle's unit normal in that frame, and per-frame work buffers."""

    def __init__(self, parts: dict):
        vertices, triangles, self.vertex_ranges, self.triangle_ranges = [], [], [], []
        nv = nt = 0
        for frame in sorted(parts):
            v0, t0 = nv, nt
            for v, t in parts[frame]:
                vertices.append(v)
                triangles.append(t + nv)
                nv, nt = nv + len(v), nt + len(t)
            self.vertex_ranges.append((frame, v0, nv))
            self.triangle_ranges.append((frame, t0, nt))
        self.local = np.concatenate(vertices)
        self.triangles = np.ascontiguousarray(np.concatenate(triangles), dtype=np.int32)
        a, b, c = (self.local[self.triangles[:, k]] for k in range(3))
        n = np.cross(b - a, c - a)
        self.normals = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        self.camera = np.empty_like(self.local)      # vertices in camera axes
        self.screen = np.empty_like(self.local)      # pixel x, pixel y, depth
        self.light_dot = np.empty(len(self.triangles))


class Renderer:
    """Draws states of one ``Simulation`` into (H, W, 3) uint8 frames.

    ``planar``: a 2D task (the default view is then "side"); ``height``: the subject's
    height in m, which sets the camera's distance and aim.
    """

    def __init__(self, sim, *, planar: bool, view=None, size=(640, 480),
                 height: float = 1.8):
        self.sim = sim
        self.azimuth, self.elevation = parse_view(view, planar)
        self.width, self.height = parse_size(size)
        self.planar = planar
        self.subject_height = float(height)
        self._body_weight = sim.body_weight
        self._focal = 0.5 * self.height / math.tan(math.radians(FIELD_OF_VIEW) / 2)
        self._distance = 0.65 * self.subject_height / math.tan(math.radians(FIELD_OF_VIEW) / 2)
        #: m per pixel at the aim point (the meshes are simplified to about that)
        self.pixel_size = self._distance / self._focal
        geometry = sim.visual_geometry()
        self._spheres = geometry["spheres"]
        self._pelvis = (geometry["frames"].index("/bodyset/pelvis")
                        if "/bodyset/pelvis" in geometry["frames"] else 0)
        self._build_bones(geometry)
        H, W = self.height, self.width
        t = np.linspace(0.0, 1.0, H)[:, None, None]
        self._sky = ((1 - t) * [214, 226, 240] + t * [244, 246, 250]).astype(np.uint8) \
            * np.ones((1, W, 1), np.uint8)
        self.image = np.empty((H, W, 3), np.uint8)
        self._depth = np.empty((H, W))
        self._floor_depth = np.empty((H, W))
        self._bone_depth = np.empty((H, W))
        self._ghost_image = np.empty((H, W, 3), np.uint8)
        self._ghost_depth = np.empty((H, W))
        self._last_pelvis = np.zeros(3)

    def _build_bones(self, geometry):
        """The meshes at two levels of detail: the model's (clustered to 1.2 pixels at
        the aim point) and the translucent ghost's (2 pixels)."""
        from fastenv.envs.variants import mesh_dir
        model_dir = Path(self.sim.model_path).resolve().parent
        folders = (mesh_dir(), model_dir / "Geometry", model_dir)
        meshes, bare = [], list(geometry["bare_bodies"])
        for frame, name, scale in geometry["meshes"]:
            found = next((f / name for f in folders if (f / name).is_file()), None)
            if found is None:       # a mesh we cannot find: draw its frame as a sphere
                bare.append(frame)
                continue
            points, triangles = read_vtp(str(found))
            meshes.append((frame, points * scale, triangles))
        sphere = _icosphere(0.02 * self.subject_height)

        def level(cell):
            parts = {}
            for frame, points, triangles in meshes:
                parts.setdefault(frame, []).append(simplify(points, triangles, cell))
            for frame in bare:
                parts.setdefault(frame, []).append(sphere)
            return _Bones(parts)
        self._model_bones = level(1.2 * self.pixel_size)
        self._ghost_bones = level(2.0 * self.pixel_size)

    # ------------------------------------------------------------------ camera
    def look_at(self, target):
        """Aim the camera at ``target`` (ground frame, m) from the view's direction."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        back = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        right = np.cross(-back, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, -back)
        self._eye = np.asarray(target, float) + self._distance * back
        self._axes = np.stack([right, up, -back])          # rows: camera x, y, forward
        self._light = 0.35 * right + 0.6 * up + 0.72 * back
        self._light /= np.linalg.norm(self._light)

    def project(self, points) -> np.ndarray:
        """(n, 3) ground-frame points -> (n, 3): pixel x, pixel y (down), depth (m)."""
        c = (np.asarray(points, float).reshape(-1, 3) - self._eye) @ self._axes.T
        return self._to_screen(c, c)

    def _to_screen(self, camera, out) -> np.ndarray:
        """Perspective division of camera-axes points (may be ``out`` itself); depth
        NaN closer than NEAR, so that the kernel drops those triangles."""
        z = camera[:, 2].copy()
        z[z < NEAR] = np.nan
        f = self._focal / z
        out[:, 0] = 0.5 * self.width + f * camera[:, 0]
        out[:, 1] = 0.5 * self.height - f * camera[:, 1]
        out[:, 2] = z
        return out

    # ------------------------------------------------------------------ drawing
    def _shade(self, light_dot, color) -> np.ndarray:
        """Lambert shading, lit from both sides (mesh windings are not consistent)."""
        shade = np.clip((0.38 + 0.62 * np.abs(light_dot))[:, None] * color, 0, 255)
        with np.errstate(invalid="ignore"):   # NaN poses: the kernel drops those anyway
            return shade.astype(np.uint8)

    def _draw(self, vertices, triangles, colors, depth, image):
        kernels.rasterize(np.ascontiguousarray(vertices, dtype=np.float64),
                          np.ascontiguousarray(triangles, dtype=np.int32),
                          np.ascontiguousarray(colors, dtype=np.uint8), depth, image)

    def _bones(self, bones, transforms, color, depth, image) -> tuple[int, int, int, int]:
        """Draw ``bones`` posed by ``transforms``; returns their pixel bounding box
        (x0, y0, x1, y1), clipped to the image."""
        cam, eye = self._axes, self._eye
        for frame, v0, v1 in bones.vertex_ranges:
            R, p = transforms[frame, :, :3], transforms[frame, :, 3]
            # straight into camera axes: local -> ground -> camera in one product
            np.matmul(bones.local[v0:v1], (cam @ R).T, out=bones.camera[v0:v1])
            bones.camera[v0:v1] += cam @ (p - eye)
        for frame, t0, t1 in bones.triangle_ranges:
            # n . light in ground = n_local . (R^T light): no normals rotated
            np.matmul(bones.normals[t0:t1], transforms[frame, :, :3].T @ self._light,
                      out=bones.light_dot[t0:t1])
        screen = self._to_screen(bones.camera, bones.screen)
        self._draw(screen, bones.triangles, self._shade(bones.light_dot, color), depth, image)
        (x0, y0), (x1, y1) = screen[:, :2].min(axis=0), screen[:, :2].max(axis=0)
        if not np.isfinite([x0, y0, x1, y1]).all():     # some behind the camera
            return 0, 0, self.width, self.height
        x0, y0, x1, y1 = math.floor(x0), math.floor(y0), math.ceil(x1) + 1, math.ceil(y1) + 1
        return (int(max(x0, 0)), int(max(y0, 0)), int(min(x1, self.width)),
                int(min(y1, self.height)))

    def _lines(self, starts, ends, colors, width_px, depth, image, bias=0.0):
        """3D segments as screen-space quads ``width_px`` wide, depth-tested (``bias``
        m towards the camera)."""
        if not len(starts):
            return
        a, b = self.project(starts), self.project(ends)
        d = b[:, :2] - a[:, :2]
        n = np.column_stack([-d[:, 1], d[:, 0]])
        n *= 0.5 * width_px / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        quads = np.stack([a[:, :2] + n, a[:, :2] - n, b[:, :2] - n, b[:, :2] + n], axis=1)
        z = np.stack([a[:, 2], a[:, 2], b[:, 2], b[:, 2]], axis=1) - bias
        vertices = np.concatenate([quads, z[:, :, None]], axis=2).reshape(-1, 3)
        k = 4 * np.arange(len(starts))[:, None]
        triangles = np.concatenate([k + [0, 1, 2], k + [0, 2, 3]])
        self._draw(vertices, triangles, np.concatenate([colors, colors]), depth, image)

    def _floor(self, target):
        """Tiles of 0.5 m, coloured in 1 m squares; labels at every metre."""
        x0, z0 = math.floor(target[0]) - 8, math.floor(target[2]) - 4
        xs, zs = x0 + 0.5 * np.arange(34), z0 + 0.5 * np.arange(18)
        gx, gz = np.meshgrid(xs, zs, indexing="ij")
        corners = np.stack([np.column_stack([gx.ravel() + dx, np.zeros(gx.size),
                                             gz.ravel() + dz])
                            for dx, dz in ((0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5))], axis=1)
        checker = (np.floor(gx.ravel()) + np.floor(gz.ravel())).astype(int) % 2
        colors = np.where(checker[:, None] == 0, FLOOR[0], FLOOR[1])
        k = 4 * np.arange(gx.size)[:, None]
        triangles = np.concatenate([k + [0, 1, 2], k + [0, 2, 3]])
        self._draw(self.project(corners.reshape(-1, 3)), triangles,
                   np.concatenate([colors, colors]), self._depth, self.image)
        marks = np.arange(x0, x0 + 17)
        side = 1.0 if math.cos(math.radians(self.azimuth)) >= 0 else -1.0
        at = self.project(np.column_stack([marks, np.zeros(len(marks)),
                                           np.full(len(marks), target[2] + side * 0.4)]))
        taken = []     # label boxes already written: nearer marks first, none overlap
        for k in np.argsort(np.nan_to_num(at[:, 2], nan=np.inf)):
            x, y, z = at[k]
            if not np.isfinite(z) or any(abs(x - x2) < 60 and abs(y - y2) < 18
                                         for x2, y2 in taken):
                continue
            label = f"{marks[k]} m"
            if not self.fits(label, x - 12, y + 4):   # a cut label ("1 m" of -1 m) misleads
                continue
            taken.append((x, y))
            self.text(label, x - 12, y + 4)

    def _forces(self, transforms, grf):
        """One arrow per contact force, from its contact spheres' mean ground point
        (weighted by penetration), ``ARROW_M_PER_BODY_WEIGHT`` m per body weight."""
        starts, ends = [], []
        for spheres, load in zip(self._spheres, np.asarray(grf).reshape(-1, 6)):
            force = load[:3]
            if not spheres or np.linalg.norm(force) < 0.02 * self._body_weight:
                continue
            centres = np.array([transforms[f, :, :3] @ c + transforms[f, :, 3]
                                for f, c, _ in spheres])
            depth = np.array([r for _, _, r in spheres]) - centres[:, 1]
            w = np.maximum(depth, 0.0)
            w = w / w.sum() if w.sum() > 0 else (depth == depth.max()).astype(float)
            point = (w @ centres) * [1.0, 0.0, 1.0]
            starts.append(point)
            ends.append(point + force / self._body_weight * ARROW_M_PER_BODY_WEIGHT)
        if not starts:
            return
        starts, ends = np.array(starts), np.array(ends)
        color = np.tile(GRF_ARROW, (len(starts), 1))
        self._lines(starts, ends, color, 4.0, self._depth, self.image, bias=1.0)
        a, b = self.project(starts), self.project(ends)     # heads: screen triangles
        d = b[:, :2] - a[:, :2]
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        n = np.column_stack([-d[:, 1], d[:, 0]])
        tip = b[:, :2] + 6 * d
        heads = np.stack([tip, b[:, :2] + 7 * n, b[:, :2] - 7 * n], axis=1)
        z = np.repeat(b[:, 2:3] - 1.0, 3, axis=1)[:, :, None]
        self._draw(np.concatenate([heads, z], axis=2).reshape(-1, 3),
                   np.arange(3 * len(b)).reshape(-1, 3), color, self._depth, self.image)

    def fits(self, text: str, x: float, y: float, scale: int = 2) -> bool:
        """Whether :meth:`text` would write all of ``text`` at (x, y) inside the image."""
        if not (math.isfinite(x) and math.isfinite(y)):
            return False
        glyphs = [_glyph(ch, scale) for ch in text]
        width = sum(g.shape[1] + scale for g in glyphs) - scale
        height = max(g.shape[0] for g in glyphs)
        return 0 <= x and x + width <= self.width and 0 <= y and y + height <= self.height

    def text(self, text: str, x: float, y: float, scale: int = 2, color=TEXT):
        """Write ``text`` (digits, '.', '-', ' ', 'm', 's', 't') at pixel (x, y)."""
        if not (math.isfinite(x) and math.isfinite(y)):
            return
        x, y = int(x), int(y)
        for ch in text:
            glyph = _glyph(ch, scale)
            h, w = glyph.shape
            ys, xs = slice(max(y, 0), min(y + h, self.height)), slice(max(x, 0),
                                                                         min(x + w, self.width))
            if ys.start < ys.stop and xs.start < xs.stop:
                g = glyph[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x]
                self.image[ys, xs][g] = color
            x += w + scale

    def frame(self, state=None, *, ghost=None, activation=None, grf=None,
              time: float | None = None) -> np.ndarray:
        """Draw ``state`` (default: the simulation's current one) and return the frame
        (H, W, 3) uint8, a new array.

        ``ghost``: coordinates ``(q, qdot)`` of a second pose, drawn translucent over
        everything but the floor (the reference's); ``activation``: per muscle, in
        [0, 1] (None: muscles in one neutral colour); ``grf``: (n_contact, 6) loads as
        in ``Simulation.buf`` (None: no arrows); ``time``: written in the corner (s).
        """
        sim = self.sim
        transforms = sim.frame_transforms(state)
        pelvis = transforms[self._pelvis, :, 3]
        if not np.isfinite(pelvis).all():    # a failed simulation: keep the last camera
            pelvis = self._last_pelvis
        self._last_pelvis = pelvis
        target = np.array([pelvis[0], 0.5 * self.subject_height,
                           0.0 if self.planar else pelvis[2]])
        self.look_at(target)
        np.copyto(self.image, self._sky)
        self._depth.fill(np.inf)
        self._floor(target)
        np.copyto(self._floor_depth, self._depth)
        self._bones(self._model_bones, transforms, BONE, self._depth, self.image)
        np.copyto(self._bone_depth, self._depth)
        if sim.muscles:
            paths = sim.muscle_paths(state)
            starts = np.concatenate([p[:-1] for p in paths])
            ends = np.concatenate([p[1:] for p in paths])
            if activation is None:
                colors = np.tile(MUSCLE_UNKNOWN, (len(starts), 1))
            else:
                a = np.clip(np.repeat(np.asarray(activation, float),
                                      [len(p) - 1 for p in paths]), 0.0, 1.0)[:, None]
                colors = (1 - a) * MUSCLE_RELAXED + a * MUSCLE_ACTIVE
            self._lines(starts, ends, colors, 3.0, self._depth, self.image, bias=0.03)
        if grf is not None:
            self._forces(transforms, grf)
        self._ghost_depth.fill(np.inf)
        if ghost is not None:
            x0, y0, x1, y1 = self._bones(self._ghost_bones,
                                         sim.frame_transforms(sim.posed_state(*ghost)),
                                         GHOST, self._ghost_depth, self._ghost_image)
            box = np.s_[y0:y1, x0:x1]
            hit = self._ghost_depth[box] < self._floor_depth[box]
            image = self.image[box]
            image[hit] = (image[hit] * (1 - GHOST_ALPHA)
                          + self._ghost_image[box][hit] * GHOST_ALPHA).astype(np.uint8)
        if time is not None:
            self.text(f"t {time:.2f} s", 10, 10)
        return self.image.copy()

    @property
    def model_mask(self) -> np.ndarray:
        """(H, W) bool: the pixels the model's bones cover in the last frame."""
        return self._bone_depth < self._floor_depth

    @property
    def ghost_mask(self) -> np.ndarray:
        """(H, W) bool: the pixels the ghost covers in the last frame."""
        return self._ghost_depth < self._floor_depth


# ----------------------------------------------------------------------- output
def require_display():
    """Raise a one-line error where no window can open (no display, no pygame)."""
    import importlib.util
    headless = sys.platform.startswith("linux") and not any(
        os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))
    if headless:
        raise ValueError("render_mode='human' needs a display and none was found "
                         "($DISPLAY is unset): use render_mode='rgb_array' for frames, or "
                         "`fastenv render TASK --out video.mp4` for a video")
    if importlib.util.find_spec("pygame") is None:
        raise ValueError("render_mode='human' needs pygame: pip install "
                         "'fastenv-opensim[render]'")


class Window:
    """A pygame window showing frames at up to ``fps`` frames/s (``render_mode="human"``).
    Closing it stops the display; the env goes on."""

    def __init__(self, width: int, height: int, fps: int = FPS, title: str = "fastenv"):
        require_display()
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame
        self._pygame = pygame
        pygame.display.init()
        self._screen = pygame.display.set_mode((width, height))
        pygame.display.set_caption(title)
        self._clock = pygame.time.Clock()
        self.fps = fps
        self.closed = False

    def show(self, frame: np.ndarray):
        if self.closed:
            return
        pygame = self._pygame
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                self.close()
                return
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self._screen.blit(surface, (0, 0))
        pygame.display.flip()
        self._clock.tick(self.fps)

    def close(self):
        if not self.closed:
            self.closed = True
            self._pygame.display.quit()


def check_video_size(suffix: str, width: int, height: int, names=("width", "height")):
    """Refuse odd sides for a ``.mp4``: H.264's 4:2:0 colour needs even ones, and
    imageio would stretch the frames to fit rather than say so."""
    if suffix == ".mp4" and (width % 2 or height % 2):
        raise ValueError(f"a .mp4 (H.264) needs an even {names[0]} and {names[1]}, got "
                         f"{width}x{height}: make them even, or write a .gif")


def write_video(path, frames, fps: int):
    """Write ``frames`` (an iterable of (H, W, 3) uint8) to ``path``: ``.mp4`` (H.264
    through the ffmpeg that imageio-ffmpeg bundles) or ``.gif`` (Pillow). Returns the
    number of frames written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"video file must end in .mp4 or .gif, got {str(path)!r}")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    frames = itertools.chain([first], frames)
    height, width = first.shape[:2]
    check_video_size(suffix, width, height)
    n = 0
    if suffix == ".gif":
        try:
            from PIL import Image
        except ImportError:
            raise ValueError("writing .gif needs Pillow: pip install "
                             "'fastenv-opensim[render]'") from None
        # one adaptive palette per frame, converted as frames come (a tenth of the RGB)
        images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE)
                  for f in frames]
        # GIF delays are whole centiseconds; viewers slow down delays under 2 cs
        images[0].save(path, save_all=True, append_images=images[1:],
                       duration=max(20, round(1000 / fps)), loop=0)
        return len(images)
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the bundled ffmpeg binary)
    except ImportError:
        raise ValueError("writing .mp4 needs imageio and imageio-ffmpeg: pip install "
                         "'fastenv-opensim[render]'") from None
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7,
                            macro_block_size=2, ffmpeg_log_level="error") as writer:
        for f in frames:
            writer.append_data(f)
            n += 1
    return n


def reference_frame(env, step: int) -> np.ndarray:
    """A frame of ``env``'s reference alone (an ``ImitationEnv``) at env step ``step``:
    its pose, its muscle paths in a neutral colour and the contact loads that pose
    implies on the model, no ghost."""
    sim = env.sim
    state = sim.posed_state(*env.reference.coordinates_at(step))
    return env.renderer.frame(state, grf=sim.contact_loads(state),
                              time=step * sim.control_dt)
