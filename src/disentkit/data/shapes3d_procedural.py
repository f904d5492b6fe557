"""3D Shapes rendered procedurally: the exact factor grid of the real file from a torch ray caster.

Factors (Burgess & Kim 2018): floor_hue, wall_hue, object_hue 10 each (hue 0, 0.1, …, 0.9),
scale 8 = linspace(0.75, 1.25, 8), shape 4 (cube, cylinder, sphere, capsule), orientation 15 =
linspace(−30°, 30°, 15); 480,000 RGB 64×64 images in the file's index order (orientation fastest).

Scene (calibrated by eye and by boundary rows against the 3D Shapes notebook panels): a floor plane,
a back wall and two side walls of a box room, sky above the walls; the object stands at the centre
and the camera orbits it by the orientation angle. Walls and floor are flat fully saturated colours
HSV(h, 1, 1) (side walls dimmer); the object is Lambert-shaded with a small white highlight; the
object casts a hard shadow from a directional light. The sky is RGB (153, 226, 249).

Geometry depends only on (scale, shape, orientation) — 480 combinations — so one ray-marching pass
(2×2 supersampled) stores, per pixel, how much of each surface it sees and with what shading:
``weights`` (480, 3, 64, 64) for floor, wall and object colours and ``extra`` (480, 3, 64, 64) for
the sky and the white highlight. Any image is then ``clip(Σ weights·colour + extra)`` — instant.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
import torch

from .base import DATASETS, DatasetEntry, Factor, FactorDataset

SIZE = 64
SKY = (153 / 255, 226 / 255, 249 / 255)
SHAPES = ("cube", "cylinder", "sphere", "capsule")
FACTORS = (
    Factor("floor_hue", tuple(np.round(np.linspace(0.0, 0.9, 10), 6).tolist())),
    Factor("wall_hue", tuple(np.round(np.linspace(0.0, 0.9, 10), 6).tolist())),
    Factor("object_hue", tuple(np.round(np.linspace(0.0, 0.9, 10), 6).tolist())),
    Factor("scale", tuple(np.round(np.linspace(0.75, 1.25, 8), 6).tolist())),
    Factor("shape", (0.0, 1.0, 2.0, 3.0), SHAPES),
    Factor("orientation", tuple(np.round(np.linspace(-30.0, 30.0, 15), 6).tolist())),
)

# ----------------------------------------------------------------------------- scene constants
CAM_RADIUS = 12.0          # camera distance from the object's axis
CAM_HEIGHT = 4.5
TARGET_HEIGHT = 1.5       # the camera looks at (0, TARGET_HEIGHT, 0)
FOV_DEG = 25.0            # vertical = horizontal field of view
BACK_WALL_Z = -2.0        # back wall plane z = BACK_WALL_Z
SIDE_WALL_X = 3.6         # side walls x = ±SIDE_WALL_X
WALL_HEIGHT = 2.5
LIGHT_DIR = (-0.45, 0.85, -0.35)  # direction towards the light (world), normalised below
SIDE_WALL_SHADE = 0.62
SHADOW_SHADE = 0.38
OBJ_AMBIENT, OBJ_DIFFUSE, OBJ_WHITE = 0.8, 0.45, 0.12
# object sizes at scale 1 (world units); scale multiplies them
CUBE_HALF, CYL_RADIUS, CYL_HALF_HEIGHT = 0.88, 0.9, 1.03
SPHERE_RADIUS, CAPSULE_RADIUS, CAPSULE_HALF_LENGTH = 1.1, 0.8, 0.94
OBJECT_Z = 1.0            # the object stands at (0, 0, OBJECT_Z); the camera orbits the y axis


def hue_rgb(hue: float) -> tuple[float, float, float]:
    """Fully saturated colour HSV(hue, 1, 1) as RGB in [0, 1]."""
    return colorsys.hsv_to_rgb(hue, 1.0, 1.0)


BOUND_CENTER = (0.0, 2.0, 0.0)   # a sphere holding every object at every scale
BOUND_RADIUS = 2.7


def _sdf(p: torch.Tensor, shape: int, s: torch.Tensor) -> torch.Tensor:
    """Signed distance from points p (S, K, 3) to a ``shape`` object of scale s (S, 1), base on y = 0."""
    x, y, z = p.unbind(-1)
    z = z - OBJECT_Z
    if shape == 0:      # cube: axis-aligned box of half-size h standing on the floor
        h = CUBE_HALF * s
        q = torch.stack([x.abs() - h, (y - h).abs() - h, z.abs() - h], -1)
        return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)
    if shape == 1:      # cylinder: vertical, radius r, half-height hh
        r, hh = CYL_RADIUS * s, CYL_HALF_HEIGHT * s
        d = torch.stack([torch.hypot(x, z) - r, (y - hh).abs() - hh], -1)
        return d.clamp_min(0).norm(dim=-1) + d.amax(-1).clamp_max(0)
    if shape == 2:      # sphere
        rs = SPHERE_RADIUS * s
        return torch.sqrt(x * x + (y - rs) ** 2 + z * z) - rs
    rc, L = CAPSULE_RADIUS * s, CAPSULE_HALF_LENGTH * s   # capsule: segment y in [rc, rc + 2L], radius rc
    yc = torch.minimum(torch.maximum(y - rc, torch.zeros_like(y)), (2 * L).expand_as(y))
    return torch.sqrt(x * x + (y - rc - yc) ** 2 + z * z) - rc


def _bound_interval(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays (K, 3) through the bounding sphere (inf where missed)."""
    oc = o - torch.tensor(BOUND_CENTER, dtype=o.dtype) - torch.tensor([0.0, 0.0, OBJECT_Z], dtype=o.dtype)
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - BOUND_RADIUS**2)
    root = disc.clamp_min(0).sqrt()
    t0, t1 = (-b - root).clamp_min(0), -b + root
    miss = (disc <= 0) | (t1 <= 0)
    inf = torch.full_like(t0, math.inf)
    return torch.where(miss, inf, t0), torch.where(miss, inf, t1)


def _march(o: torch.Tensor, d: torch.Tensor, shape: int, scales: torch.Tensor, t_max: torch.Tensor,
           steps: int = 96) -> torch.Tensor:
    """Sphere-trace rays (K, 3) to the object at each scale (S,); hit distances (S, K), +inf on a miss.

    Only rays through the bounding sphere are marched, from where they enter it, and finished rays
    are dropped from the working set every few steps.
    """
    S, K = len(scales), len(d)
    out = torch.full((S * K,), math.inf, dtype=d.dtype)
    t0, t1 = _bound_interval(o, d)
    sel = (torch.isfinite(t0) & (t0 < t_max)).nonzero().squeeze(1)
    if sel.numel() == 0:
        return out.view(S, K)
    # working set: flat (scale, ray) pairs
    idx = (torch.arange(S)[:, None] * K + sel[None]).reshape(-1)
    ray = idx % K
    s = scales[idx // K]
    t = t0[ray].clone()
    lim = torch.minimum(t1, t_max)[ray]
    for step in range(steps):
        dist = _sdf((o[ray] + t[:, None] * d[ray])[None], shape, s[None, :])[0]
        hit = dist < 1e-4 * (1 + t)
        t = t + dist.clamp_min(0)
        done = hit | (t > lim)
        if bool(hit.any()):
            out[idx[hit]] = t[hit]
        if step % 4 == 3 or bool(done.all()):
            keep = ~done
            if not bool(keep.any()):
                break
            idx, ray, s, t, lim = idx[keep], ray[keep], s[keep], t[keep], lim[keep]
    return out.view(S, K)


def _normal(p: torch.Tensor, shape: int, s: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    e = torch.eye(3, dtype=p.dtype) * eps
    g = torch.stack([_sdf(p + e[i], shape, s) - _sdf(p - e[i], shape, s) for i in range(3)], -1)
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def camera_rays(azimuth_deg: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Origin (3,) and unit directions (size², 3) of a pinhole camera orbiting the object."""
    a = math.radians(azimuth_deg)
    eye = torch.tensor([CAM_RADIUS * math.sin(a), CAM_HEIGHT, CAM_RADIUS * math.cos(a)], dtype=torch.float64)
    target = torch.tensor([0.0, TARGET_HEIGHT, 0.0], dtype=torch.float64)
    fwd = target - eye
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    right = right / right.norm()
    up = torch.linalg.cross(right, fwd)
    half = math.tan(math.radians(FOV_DEG) / 2)
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(-c, c, indexing="ij")  # rows go down
    d = fwd + half * (u.reshape(-1, 1) * right + v.reshape(-1, 1) * up)
    return eye, d / d.norm(dim=-1, keepdim=True)


def _plane_t(o: torch.Tensor, d: torch.Tensor, axis: int, value: float) -> torch.Tensor:
    dd = d[..., axis]
    t = (value - o[axis]) / torch.where(dd.abs() < 1e-12, torch.full_like(dd, 1e-12), dd)
    return torch.where(t > 1e-6, t, torch.full_like(t, math.inf))


def room(azimuth_deg: float, n: int) -> dict[str, torch.Tensor]:
    """The room seen by each camera ray: distance, hit point, surface (floor / wall / sky) and shade."""
    eye, dirs = camera_rays(azimuth_deg, n)
    inf = torch.full((len(dirs),), math.inf, dtype=dirs.dtype)
    t_floor = torch.where(dirs[:, 1] < 0, _plane_t(eye, dirs, 1, 0.0), inf)
    t_back = _plane_t(eye, dirs, 2, BACK_WALL_Z)
    t_side = torch.minimum(torch.where(dirs[:, 0] < 0, _plane_t(eye, dirs, 0, -SIDE_WALL_X), inf),
                           torch.where(dirs[:, 0] > 0, _plane_t(eye, dirs, 0, SIDE_WALL_X), inf))
    t_wall = torch.minimum(t_back, t_side)
    floor = t_floor < t_wall
    sky = ~floor & ((eye[1] + t_wall * dirs[:, 1]) > WALL_HEIGHT)
    t = torch.where(floor, t_floor, torch.where(sky, torch.full_like(t_wall, 1e3), t_wall))
    shade = torch.where(~floor & (t_side < t_back), SIDE_WALL_SHADE, 1.0).to(dirs.dtype)
    return {"eye": eye, "dirs": dirs, "t": t, "floor": floor, "sky": sky, "shade": shade,
            "point": eye + t[:, None] * dirs}


def render_geometry(azimuth_deg: float, shape: int, scales: torch.Tensor,
                    supersample: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel colour weights (S, 3, 64, 64) and additive terms (S, 3, 64, 64) for one shape at S scales.

    Weight channel 0 multiplies the floor colour, 1 the wall colour, 2 the object colour; the
    additive term holds the sky and the object's white highlight.
    """
    n = SIZE * supersample
    r = room(azimuth_deg, n)
    S, P = len(scales), len(r["dirs"])
    sc = scales.to(torch.float64)
    light = torch.tensor(LIGHT_DIR, dtype=torch.float64)
    light = light / light.norm()
    t_obj = _march(r["eye"].expand(P, 3), r["dirs"], shape, sc, r["t"])
    obj = torch.isfinite(t_obj)
    # hard shadow: room points whose ray towards the light meets the object
    lit_pts = r["point"] + 1e-3 * light
    t_sh = _march(lit_pts, light.expand(P, 3), shape, sc, torch.full((P,), 50.0, dtype=torch.float64), steps=60)
    shadow = torch.isfinite(t_sh) & ~r["sky"][None]
    shade_room = r["shade"][None] * torch.where(shadow, SHADOW_SHADE, 1.0)
    # object: Lambert + a little white
    p_obj = r["eye"] + torch.where(obj, t_obj, torch.zeros_like(t_obj))[..., None] * r["dirs"]
    lam = (_normal(p_obj, shape, sc[:, None]) * light).sum(-1).clamp_min(0)
    floor, sky = r["floor"][None], r["sky"][None]
    w = torch.stack([torch.where(~obj & floor, shade_room, 0.0),
                     torch.where(~obj & ~floor & ~sky, shade_room, 0.0),
                     torch.where(obj, OBJ_AMBIENT + OBJ_DIFFUSE * lam, 0.0)], 1)
    sky_rgb = torch.tensor(SKY, dtype=torch.float64)[None, :, None]
    extra = torch.where((~obj & sky)[:, None], sky_rgb, 0.0) + torch.where(obj, OBJ_WHITE * lam**4, 0.0)[:, None]
    pool = torch.nn.functional.avg_pool2d
    w = pool(w.reshape(S * 3, 1, n, n), supersample).view(S, 3, SIZE, SIZE)
    extra = pool(extra.reshape(S * 3, 1, n, n), supersample).view(S, 3, SIZE, SIZE)
    return w.float(), extra.float()


def geometry_cache(supersample: int) -> Path | None:
    """Default file for the geometry tables: ``<data root>/shapes3d_procedural/``, keyed by the scene constants."""
    import hashlib

    from .cache import data_root

    consts = repr([(k, v) for k, v in sorted(globals().items()) if k.isupper() and isinstance(v, (int, float, tuple))])
    key = hashlib.sha256(f"{consts}{supersample}".encode()).hexdigest()[:12]
    return data_root() / "shapes3d_procedural" / f"geometry-ss{supersample}-{key}.npz"


class Shapes3DProcedural(FactorDataset):
    """Procedural 3D Shapes: 480 precomputed geometries coloured on demand (float images in [0, 1]).

    ``materialize()`` fills a uint8 (480000, 64, 64, 3) tensor (5.9 GB) for gather-only batches;
    without it each batch is coloured from the geometry tables (a few ms for 64 images).
    ``cache_path`` stores the geometry tables (47 MB) so later runs skip the ray casting.
    """

    name = "shapes3d_procedural"
    factors = FACTORS
    observation_shape = (3, SIZE, SIZE)

    def __init__(self, supersample: int = 2, cache_path: str | Path | None = "auto", progress: bool = False) -> None:
        """``cache_path="auto"`` keeps the geometry tables under the data root (see :func:`geometry_cache`)."""
        self.supersample = supersample
        if cache_path == "auto":
            cache_path = geometry_cache(supersample)
        self.palette = torch.tensor([hue_rgb(h) for h in FACTORS[0].values], dtype=torch.float32)  # (10, 3)
        self.images: torch.Tensor | None = None
        self._weights: torch.Tensor | None = None
        self._extra: torch.Tensor | None = None
        self._tables: dict[torch.device, tuple[torch.Tensor, ...]] = {}
        self._cache_path = Path(cache_path) if cache_path else None
        self._progress = progress

    # ------------------------------------------------------------------ geometry tables
    def geometry(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights, extra), each (480, 3, 64, 64), indexed by (scale·4 + shape)·15 + orientation."""
        if self._weights is None:
            if self._cache_path is not None and self._cache_path.is_file():
                z = np.load(self._cache_path)
                self._weights, self._extra = torch.from_numpy(z["weights"]), torch.from_numpy(z["extra"])
            else:
                self._weights, self._extra = self._compute()
                if self._cache_path is not None:
                    try:
                        self._cache_path.parent.mkdir(parents=True, exist_ok=True)
                        tmp = self._cache_path.with_name(self._cache_path.name + ".part.npz")
                        np.savez(tmp, weights=self._weights.numpy(), extra=self._extra.numpy())
                        tmp.replace(self._cache_path)
                    except OSError:
                        pass  # a read-only data root only costs the ray casting next time
        return self._weights, self._extra  # type: ignore[return-value]

    def _compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        n_sc, n_sh, n_or = 8, 4, 15
        w = torch.empty(n_sc * n_sh * n_or, 3, SIZE, SIZE)
        e = torch.empty_like(w)
        scales = torch.tensor(FACTORS[3].values, dtype=torch.float64)
        orients = range(n_or)
        if self._progress:
            from tqdm import tqdm
            orients = tqdm(orients, desc="ray casting shapes3d_procedural", unit="view")
        for o in orients:
            for shape in range(n_sh):
                wo, eo = render_geometry(FACTORS[5].values[o], shape, scales, self.supersample)
                rows = (torch.arange(n_sc) * n_sh + shape) * n_or + o
                w[rows], e[rows] = wo, eo
        return w, e

    # ------------------------------------------------------------------ images
    def render_factors(self, factors: torch.Tensor) -> torch.Tensor:
        """Float images (N, 3, 64, 64) in [0, 1] for factor classes (N, 6), on factors' device."""
        dev = factors.device
        weights, extra, pal = self.tables_on(dev)
        f = factors.long()
        geo = (f[:, 3] * 4 + f[:, 4]) * 15 + f[:, 5]
        cols = torch.stack([pal[f[:, 0]], pal[f[:, 1]], pal[f[:, 2]]], 1)      # (N, 3 surfaces, 3 rgb)
        w, e = weights[geo], extra[geo]                                        # (N, 3 surfaces, H, W)
        for s in range(3):                                                     # img = Σ_s w_s · colour_s + e
            e.addcmul_(w[:, s:s + 1], cols[:, s, :, None, None])
        return e.clamp_(0, 1)

    def tables_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The geometry tables and palette held on ``device`` (47 MB, copied once): a batch rendered off the
        CPU is indexed there, with no host sync and no per-batch copy (CUDA_SUSPECTS 10)."""
        if device.type == "cpu":
            return (*self.geometry(), self.palette)
        if device not in self._tables:
            self._tables[device] = tuple(t.to(device) for t in (*self.geometry(), self.palette))
        return self._tables[device]

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        if self.images is not None:
            batch = self.images[index.to(self.images.device)].to(index.device)
            return batch.permute(0, 3, 1, 2).float().div_(255)
        return self.render_factors(self.index_to_factors(index))

    def render_geometry_all_hues(self, geo: int) -> torch.Tensor:
        """Float images (1000, 3, 64, 64) of one geometry under every (floor, wall, object) hue combination,
        in index order; no per-image copy of the geometry tables (their rows are broadcast)."""
        weights, extra = self.geometry()
        w, e = weights[geo], extra[geo]                                          # (3, H, W)
        f = torch.arange(1000)
        cols = self.palette[torch.stack([f // 100, (f // 10) % 10, f % 10], 1)]   # (1000, 3 surfaces, 3 rgb)
        img = e.expand(1000, 3, SIZE, SIZE).clone()
        for s in range(3):
            img.addcmul_(w[s].expand(1000, 1, SIZE, SIZE), cols[:, s, :, None, None])
        return img.clamp_(0, 1)

    def materialize(self, device: str | torch.device = "cpu") -> "Shapes3DProcedural":
        """Render all 480,000 images into a uint8 (N, 64, 64, 3) tensor (5.9 GB) on ``device``.

        Index = hue combination · 480 + geometry, so each geometry's 1000 images are one broadcast.
        """
        images = torch.empty(self.num_images, SIZE, SIZE, 3, dtype=torch.uint8, device=device)
        hue_rows = torch.arange(1000) * 480
        for geo in range(480):
            img = self.render_geometry_all_hues(geo).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)
            images[(hue_rows + geo).to(device)] = img.to(device)
        self.images = images
        return self

    def to(self, device: str | torch.device) -> "Shapes3DProcedural":
        if self.images is not None:
            self.images = self.images.to(device)
        return self

    def placement_bytes(self) -> int:
        """Every image as uint8 (480,000 × 64 × 64 × 3 = 5.9 GB)."""
        on_device = self.images is not None and self.images.device.type != "cpu"
        return 0 if on_device else self.num_images * SIZE * SIZE * 3

    def hold_on(self, device: torch.device) -> None:
        if self.images is not None:
            self.to(device)
        else:
            self.materialize(device)


DATASETS.register(DatasetEntry("shapes3d_procedural", Shapes3DProcedural, "3D Shapes factor grid (480,000 RGB "
                               "64x64 images) from a torch ray caster; no download", procedural=True))


def best_matches(ds: Shapes3DProcedural, panels: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """For each real panel (H, W, 3 floats in [0, 1]): the closest procedural image and its mean
    absolute error. Floor and wall hues are read off the panel's pixels, the object hue off its
    centre, and the geometry (scale, shape, orientation) is searched over all 480 combinations."""
    hues = np.array([hue_rgb(h) for h in ds.factors[0].values])
    geo = torch.arange(480)
    out, errs = [], []
    for p in panels:
        fh = int(np.argmin(((hues - p[63, 1]) ** 2).sum(1)))
        wh = int(np.argmin(((hues - p[24, 1] / p[24, 1].max()) ** 2).sum(1)))
        centre = p[20:50, 16:48].reshape(-1, 3)
        far = [np.abs(centre - c).max(-1) > 0.25 for c in (hues[fh], hues[wh], np.array(SKY))]
        obj = centre[far[0] & far[1] & far[2]]
        obj = obj[obj.max(-1) > 0.5]
        oh = int(np.argmin(((hues - np.median(obj / obj.max(-1, keepdims=True), 0)) ** 2).sum(1)))
        f = torch.stack([torch.full_like(geo, fh), torch.full_like(geo, wh), torch.full_like(geo, oh),
                         geo // 60, (geo // 15) % 4, geo % 15], 1)
        imgs = ds.render_factors(f).permute(0, 2, 3, 1).numpy()
        err = np.abs(imgs - p).mean((1, 2, 3))
        out.append(imgs[err.argmin()])
        errs.append(float(err.min()))
    return np.stack(out), errs
