"""The renderer R: analytic scenes, a brute-force reference, the pixel-centre convention, gradients."""

import importlib
import importlib.util
import math
import warnings

import pytest
import torch
import trimesh

from exphead.camera import Camera, project_points
from exphead.geometry import face_normals, vertex_normals
from exphead.render import interpolate, normal_to_image, rasterize, render_normal_depth
from exphead.render.nvdiffrast_backend import clip_space
from exphead.render.pytorch3d_backend import to_ndc
from exphead.render.renderer import get_rasterizer

rasterize_module = importlib.import_module("exphead.render.rasterize")  # the package exports the function
zbuffer = importlib.import_module("exphead.render.zbuffer")


def _camera(f: float, height: int, width: int, dtype: torch.dtype = torch.float32) -> Camera:
    """A camera at the world origin with world = camera space (OpenCV axes)."""
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)
    return Camera(K[None], torch.eye(3, dtype=dtype)[None], torch.zeros(1, 3, dtype=dtype), height, width)


def _sphere(subdivisions: int, radius: float, centre: tuple[float, float, float],
            dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    verts = torch.tensor(mesh.vertices, dtype=dtype) + torch.tensor(centre, dtype=dtype)
    return verts[None], torch.tensor(mesh.faces, dtype=torch.int64)


def _rays(camera: Camera) -> torch.Tensor:
    """``H x W x 3`` camera-space ray directions (z = 1) through the pixel centres."""
    K = camera.K[0].double()
    v, u = torch.meshgrid(torch.arange(camera.height, dtype=torch.float64) + 0.5,
                          torch.arange(camera.width, dtype=torch.float64) + 0.5, indexing="ij")
    return torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)


def _reference(pix_xy: torch.Tensor, z: torch.Tensor, faces: torch.Tensor, height: int, width: int):
    """Brute force over pixels x faces: the top-left rule at pixel centres, nearest perspective depth.

    ``pix_xy``: ``N x 2`` float64 pixel coordinates, ``z``: ``N`` depths. Returns face ids and depth.
    """
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64) + 0.5,
                          torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij")
    best = torch.full((height, width), math.inf, dtype=torch.float64)
    face_id = torch.full((height, width), -1, dtype=torch.int64)
    for m, tri in enumerate(faces.tolist()):
        p, zt = pix_xy[tri], z[tri]
        e, coeff = [], []
        for i in range(3):
            a, b = p[(i + 1) % 3], p[(i + 2) % 3]
            e.append((b[0] - a[0]) * (v - a[1]) - (b[1] - a[1]) * (u - a[0]))
            coeff.append((a[1] - b[1], b[0] - a[0]))  # gradient of the edge function (A, B)
        area = e[0] + e[1] + e[2]
        sign = 1.0 if float(area[0, 0]) > 0 else -1.0
        inside = torch.ones_like(u, dtype=torch.bool)
        for i in range(3):
            A, B = sign * float(coeff[i][0]), sign * float(coeff[i][1])
            top_left = A > 0 or (A == 0 and B > 0)
            inside &= (sign * e[i] >= 0) if top_left else (sign * e[i] > 0)
        depth = area / (e[0] / zt[0] + e[1] / zt[1] + e[2] / zt[2])
        closer = inside & (depth < best)
        best[closer], face_id[closer] = depth[closer], m
    return face_id, torch.where(face_id >= 0, best, 0.0)


def test_plane_facing_camera_exact_depth_and_normal():
    cam = _camera(100.0, 40, 56)
    d = 2.5
    verts = torch.tensor([[-3.0, -3.0, d], [-3.0, 3.0, d], [3.0, 3.0, d], [3.0, -3.0, d]])[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    out = render_normal_depth(verts, faces, cam)
    assert out.mask.min() == 1.0  # the plane fills the frustum: every pixel, no crack on the diagonal
    torch.testing.assert_close(out.depth, torch.full_like(out.depth, d), rtol=1e-6, atol=0)
    expected = torch.tensor([0.0, 0.0, -1.0])[None, :, None, None].expand_as(out.normal)
    torch.testing.assert_close(out.normal, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(normal_to_image(out.normal), (expected + 1) / 2)


def test_tilted_plane_depth_is_perspective_correct():
    cam = _camera(60.0, 32, 32, torch.float64)
    n, c = torch.tensor([0.3, -0.4, -1.0], dtype=torch.float64), -2.0  # plane n . X = c, z from 1.2 to 3.6
    corners = torch.tensor([[-2.0, -2.0], [-2.0, 2.0], [2.0, 2.0], [2.0, -2.0]], dtype=torch.float64)
    z = (c - corners @ n[:2]) / n[2]
    verts = torch.cat([corners, z[:, None]], 1)[None]
    out = render_normal_depth(verts, torch.tensor([[0, 1, 2], [0, 2, 3]]), cam)
    expected = c / (_rays(cam) @ n)  # z along each pixel-centre ray
    assert out.mask.all()
    torch.testing.assert_close(out.depth[0, 0], expected, rtol=1e-10, atol=0)
    torch.testing.assert_close(out.normal[0, :, 5, 7], n / n.norm(), rtol=0, atol=1e-10)  # n_z < 0: faces us


def test_sphere_depth_normals_and_coverage_match_analytic_sphere():
    cam = _camera(300.0, 128, 128, torch.float64)
    centre, r = torch.tensor([0.02, -0.01, 3.0], dtype=torch.float64), 0.5
    verts, faces = _sphere(4, r, tuple(centre.tolist()), torch.float64)  # 5120 faces
    out = render_normal_depth(verts, faces, cam)
    rays = _rays(cam)
    # Ray-sphere intersection t * ray, nearest root.
    a, b = (rays * rays).sum(-1), (rays * centre).sum(-1)
    disc = b * b - a * (centre @ centre - r * r)
    hit = disc > 0
    t = (b - disc.clamp_min(0).sqrt()) / a
    normal = (t[..., None] * rays - centre) / r
    mask = out.mask[0, 0] > 0
    interior = hit & mask & (normal[..., 2] < -0.3)  # away from grazing angles
    assert interior.sum() > 0.8 * hit.sum()
    # The inscribed polygon lies within its sag of the sphere: the depth error along a ray is at
    # most sag / |cos(ray, normal)|, with sag = r (1 - cos(circumradius angle)) ~ 5.7e-4 here.
    edge = (verts[0, faces[:, 0]] - verts[0, faces[:, 1]]).norm(dim=-1).max()
    sag = r * (1 - math.cos(float(edge) / r / math.sqrt(3)))
    cos_ray = (normal * rays).sum(-1).abs() / rays.norm(dim=-1)
    err = (out.depth[0, 0] - t).abs()
    assert (err[interior] * cos_ray[interior]).max() < 1.1 * sag
    cos = (out.normal[0].permute(1, 2, 0)[interior] * normal[interior]).sum(-1)
    assert torch.rad2deg(torch.acos(cos.clamp(max=1))).max() < 1.0
    # Coverage: differs from the analytic disc only within a pixel of its silhouette.
    cone = math.asin(r / centre.norm())
    angle = torch.acos((rays @ centre) / (rays.norm(dim=-1) * centre.norm()))
    differs = mask != hit
    pixel_angle = 1.0 / 300.0
    assert (angle[differs] - cone).abs().max() < 1.0 * pixel_angle
    assert differs.sum() < 0.02 * hit.sum()


def test_pixel_centres_on_edges_follow_the_top_left_rule():
    # K = I: camera-space (x, y) at z = 1 are pixel coordinates. A square with corners on pixel
    # centres, split along its diagonal which also runs through pixel centres.
    cam = _camera(1.0, 8, 10)
    cam.K = torch.eye(3)[None]
    corners = torch.tensor([[2.5, 1.5, 1.0], [6.5, 1.5, 1.0], [6.5, 5.5, 1.0], [2.5, 5.5, 1.0]])[None]
    tri_a, tri_b = torch.tensor([[0, 1, 3]]), torch.tensor([[1, 2, 3]])
    cover = {name: rasterize(corners, tri, cam.K, 8, 10).face_id[0] >= 0
             for name, tri in (("a", tri_a), ("b", tri_b), ("ba", tri_a[:, [0, 2, 1]]))}
    i, j = torch.meshgrid(torch.arange(8), torch.arange(10), indexing="ij")
    # Top and left edges are in, right and bottom edges are out: centres j in 2..5, i in 1..4.
    square = (j >= 2) & (j <= 5) & (i >= 1) & (i <= 4)
    expected_a = square & (i + j < 7)  # the diagonal x + y = 8 is a right edge of triangle a
    assert torch.equal(cover["a"], expected_a)
    assert torch.equal(cover["ba"], expected_a)  # winding does not matter
    assert torch.equal(cover["b"], square & ~expected_a)  # shared edge: exactly one owner
    both = rasterize(corners, torch.cat([tri_a, tri_b]), cam.K, 8, 10).face_id[0]
    torch.testing.assert_close(both, torch.where(expected_a, 0, torch.where(square, 1, -1)))


def _triangle_soup(seed: int, count: int, height: int, width: int, max_scale: float = 300.0):
    """Random overlapping triangles on the 1/256-pixel grid (so no snapping), sizes up to
    ``max_scale`` pixels (the default: 3x the image); vertex depths 1, 2, 4 or 8."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(count, 1, 2, generator=g) * torch.tensor([width * 1.2, height * 1.2]) - 8
    scale = torch.exp(torch.rand(count, 1, 1, generator=g) * math.log(max_scale)) * 0.6
    xy = torch.round((centre + scale * torch.randn(count, 3, 2, generator=g)) * 256) / 256
    z = 2.0 ** torch.randint(0, 4, (count, 3), generator=g).double()  # powers of two: u = x / z exact
    verts = torch.cat([xy.double() * z[..., None], z[..., None]], -1).reshape(1, -1, 3)
    return verts, torch.arange(3 * count).view(count, 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_reference_including_large_and_offscreen_faces(seed):
    h, w = 48, 72
    verts, faces = _triangle_soup(seed, 60, h, w)
    K = torch.eye(3, dtype=torch.float64)[None]
    frags = rasterize(verts, faces, K, h, w)
    ref_id, ref_depth = _reference(verts[0, :, :2] / verts[0, :, 2:], verts[0, :, 2], faces, h, w)
    sizes = (verts[0, :, :2] / verts[0, :, 2:]).view(-1, 3, 2)
    assert ((sizes.amax(1) - sizes.amin(1)).amax(1) > 64).sum() >= 5  # the tiled path is exercised
    assert torch.equal(frags.face_id[0], ref_id)
    torch.testing.assert_close(frags.depth[0], ref_depth, rtol=1e-12, atol=0)


def test_chunking_and_batch_grouping_do_not_change_the_result(monkeypatch):
    verts, faces = _triangle_soup(3, 40, 40, 40)
    verts = torch.cat([verts, verts.flip(1) * torch.tensor([1.0, 1.0, 1.0])], 0)
    K = torch.eye(3, dtype=torch.float64)[None]
    full = rasterize(verts, faces, K, 40, 40)
    monkeypatch.setitem(zbuffer._MAX_CANDIDATES, "cpu", 37)
    monkeypatch.setitem(zbuffer._FACE_BLOCK, "cpu", 10)
    chunked = rasterize(verts, faces, K, 40, 40)
    assert torch.equal(full.face_id, chunked.face_id)
    torch.testing.assert_close(full.bary, chunked.bary, rtol=0, atol=0)


@pytest.mark.parametrize("cull", [False, True])
@pytest.mark.parametrize("tuning", ["default", "tiny"])
def test_batch_with_culling_matches_brute_force(cull, tuning, monkeypatch):
    # Two meshes of mostly small triangles (every window bucket), near and back-face culling; "tiny"
    # splits them into many blocks and chunks and keeps rectangular buckets unmerged.
    if tuning == "tiny":
        monkeypatch.setitem(zbuffer._FACE_BLOCK, "cpu", 37)
        monkeypatch.setitem(zbuffer._MAX_CANDIDATES, "cpu", 64)
        monkeypatch.setattr(zbuffer, "_MIN_BUCKET", 1)
    h, w, near = 40, 56, 1.5
    verts = torch.cat([_triangle_soup(seed, 300, h, w, max_scale=40.0)[0] for seed in (5, 6)])
    faces = torch.arange(900).view(300, 3)
    frags = rasterize(verts, faces, torch.eye(3, dtype=torch.float64)[None], h, w, near=near, cull_backfaces=cull)
    for i in range(2):
        uv, z = verts[i, :, :2] / verts[i, :, 2:], verts[i, :, 2]
        p = uv[faces]
        d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        keep = (z[faces] > near).all(1) & (~torch.tensor(cull) | (d1[:, 0] * d2[:, 1] < d1[:, 1] * d2[:, 0]))
        assert 0.2 < keep.float().mean() < 0.8
        ref_id, ref_depth = _reference(uv, z, faces[keep], h, w)
        ref_id = torch.where(ref_id >= 0, keep.nonzero()[:, 0][ref_id.clamp_min(0)], -1)
        assert torch.equal(frags.face_id[i], ref_id)
        torch.testing.assert_close(frags.depth[i], ref_depth, rtol=1e-12, atol=0)


def test_empty_pixels_keep_gradients_finite_next_to_faces_through_the_camera_plane():
    # Face 0 has a vertex at z = 0 (its projection is infinite) and is culled; the empty pixels
    # around the visible face must not turn its gradients into NaN.
    cam = _camera(40.0, 16, 16, torch.float64)
    verts = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 1.0], [0.0, 0.1, 1.0],
                          [-0.1, -0.1, 2.0], [0.1, -0.1, 2.0], [0.0, 0.1, 2.0]], dtype=torch.float64)[None]
    verts.requires_grad_(True)
    out = render_normal_depth(verts, torch.tensor([[0, 1, 2], [3, 5, 4]]), cam)
    assert out.mask.any() and not out.mask.all()
    (out.normal.sum() + out.depth.sum()).backward()
    assert torch.isfinite(verts.grad).all() and verts.grad[0, 3:].abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_render_synchronises_at_most_once():
    cam = _camera(200.0, 64, 48).to("cuda").expand(3)
    verts, faces = _sphere(3, 0.3, (0.0, 0.0, 2.0))
    verts, faces = verts.cuda().expand(3, -1, -1).contiguous(), faces.cuda()
    render_normal_depth(verts, faces, cam)  # first call: caches the window table on the device
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            render_normal_depth(verts, faces, cam)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len([w for w in caught if "synchroniz" in str(w.message)]) <= 1


def test_batch_equals_separate_renders():
    cam = _camera(200.0, 48, 64)
    v, faces = _sphere(3, 0.3, (0.0, 0.0, 2.0))
    g = torch.Generator().manual_seed(0)
    verts = torch.cat([v, v + 0.01 * torch.randn(v.shape, generator=g)], 0)
    both = render_normal_depth(verts, faces, cam.expand(2))
    for i in range(2):
        single = render_normal_depth(verts[i:i + 1], faces, cam)
        assert torch.equal(both.fragments.face_id[i], single.fragments.face_id[0])
        torch.testing.assert_close(both.normal[i], single.normal[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(both.depth[i], single.depth[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("dense", [False, True])
def test_gradients_match_central_finite_differences(dense, monkeypatch):
    if dense:  # every pixel, as off CPU: empty ones on the dummy triangle with zero weights
        monkeypatch.setattr(rasterize_module, "_COMPACT_DEVICES", ())
    cam = _camera(40.0, 14, 16, torch.float64)
    v, faces = _sphere(1, 0.25, (0.01, -0.02, 1.0), torch.float64)  # 42 vertices, 80 faces
    g = torch.Generator().manual_seed(1)
    verts = (v + 0.01 * torch.randn(v.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    w_n = torch.randn(1, 3, 14, 16, generator=g, dtype=torch.float64)
    w_d = torch.randn(1, 1, 14, 16, generator=g, dtype=torch.float64)

    def loss(x: torch.Tensor, camera: Camera) -> torch.Tensor:
        out = render_normal_depth(x, faces, camera)
        return (out.normal * w_n).sum() + (out.depth * w_d).sum()

    (grad,) = torch.autograd.grad(loss(verts, cam), verts)
    eps = 1e-6
    numeric = torch.zeros_like(verts)
    with torch.no_grad():
        for idx in range(verts.numel()):
            d = torch.zeros_like(verts).view(-1)
            d[idx] = eps
            d = d.view_as(verts)
            numeric.view(-1)[idx] = (loss(verts + d, cam) - loss(verts - d, cam)) / (2 * eps)
    assert grad.abs().max() > 1e-2
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-6)
    # and w.r.t. the focal length through the projection
    K = cam.K.clone().requires_grad_(True)
    shifted = Camera(K, cam.R, cam.t, cam.height, cam.width)
    (grad_k,) = torch.autograd.grad(loss(verts.detach(), shifted), K)
    with torch.no_grad():
        dk = torch.zeros_like(K)
        dk[0, 0, 0] = eps
        plus = loss(verts, Camera(K + dk, cam.R, cam.t, 14, 16))
        minus = loss(verts, Camera(K - dk, cam.R, cam.t, 14, 16))
    torch.testing.assert_close(grad_k[0, 0, 0], (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-6)


def test_dense_fragments_equal_compact_ones(monkeypatch):
    # The all-pixel path (used off CPU, no host synchronisation) against the covered-pixel one.
    cam = _camera(150.0, 40, 48).expand(2)
    v, faces = _sphere(3, 0.3, (0.02, 0.01, 2.0))
    verts = torch.cat([v, v * 0.7 + torch.tensor([0.1, 0.0, 0.6])]).requires_grad_(True)
    w = torch.randn(2, 3, 40, 48, generator=torch.Generator().manual_seed(3))

    def run() -> tuple[torch.Tensor, ...]:
        out = render_normal_depth(verts, faces, cam)
        (grad,) = torch.autograd.grad((out.normal * w).sum() + out.depth.sum(), verts)
        return out.fragments.face_id, out.fragments.bary, out.normal, out.depth, grad

    compact = run()
    monkeypatch.setattr(rasterize_module, "_COMPACT_DEVICES", ())
    dense = run()
    assert 0 < (compact[0] >= 0).float().mean() < 0.9
    assert torch.equal(compact[0], dense[0])
    for a, b in zip(compact[1:], dense[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", ["planes", "rows"])
def test_interpolate_gradients_pass_gradcheck(layout):
    cam = _camera(30.0, 10, 12, torch.float64)
    verts, faces = _sphere(1, 0.25, (0.0, 0.01, 1.0), torch.float64)
    frags = rasterize(verts, faces, cam.K, 10, 12)
    bary = frags.bary.detach() if layout == "planes" else frags.bary.detach().contiguous()
    assert bary.is_contiguous() == (layout == "rows")
    attr = torch.randn(1, verts.shape[1], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return interpolate(a, rasterize_module.Fragments(frags.face_id, b, frags.depth), faces)

    assert torch.autograd.gradcheck(fn, (attr.requires_grad_(True), bary.requires_grad_(True)))
    out = fn(attr, bary)  # gradients arriving channel-first, as from render_normal_depth's normals
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b).permute(0, 3, 1, 2), (attr, bary))
    assert out.shape == (1, 10, 12, 2) and (out[~frags.mask] == 0).all()


def test_interpolate_normalize_matches_normalizing_the_image():
    cam = _camera(30.0, 10, 12, torch.float64)
    verts, faces = _sphere(1, 0.25, (0.0, 0.01, 1.0), torch.float64)
    frags = rasterize(verts, faces, cam.K, 10, 12)
    attr = torch.randn(1, verts.shape[1], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    weight = torch.randn(1, 10, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    a, b = attr.clone().requires_grad_(True), attr.clone().requires_grad_(True)
    expected = torch.nn.functional.normalize(interpolate(a, frags, faces), dim=-1, eps=1e-12)
    got = interpolate(b, frags, faces, normalize=True)
    (expected * weight).sum().backward()
    (got * weight).sum().backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-12)
    assert (got[frags.mask].norm(dim=-1) - 1).abs().max() < 1e-12 and (got[~frags.mask] == 0).all()


def test_vertex_normals_match_autograd_and_pass_gradcheck():
    verts, faces = _sphere(1, 0.25, (0.0, 0.01, 1.0), torch.float64)
    verts = torch.cat([verts, verts * 1.1]) + 0.02 * torch.randn(2, verts.shape[1], 3, dtype=torch.float64,
                                                               generator=torch.Generator().manual_seed(5))
    x = verts.clone().requires_grad_(True)
    # the plain autograd definition: area-weighted face normals summed at their corners, normalised
    area = face_normals(x, faces, normalize=False)
    summed = torch.zeros_like(x).index_add(1, faces.reshape(-1), area.repeat_interleave(3, 1))
    expected = torch.nn.functional.normalize(summed, dim=-1)
    weight = torch.randn_like(expected)
    (expected * weight).sum().backward()
    y = verts.clone().requires_grad_(True)
    got = vertex_normals(y, faces)
    (got * weight).sum().backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(y.grad, x.grad, rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(lambda v: vertex_normals(v, faces), (verts[:1].clone().requires_grad_(True),))
    outward = (got * (verts - verts.mean(1, keepdim=True))).sum(-1)
    assert (outward > 0).all()  # counter-clockwise faces: normals point out of the sphere


def test_faces_behind_the_camera_are_culled():
    # A tilted strip from z = -0.5 (behind the camera) to z = 2.5 seen from above.
    cam = _camera(30.0, 32, 32)
    xs, zs = torch.linspace(-1, 1, 5), torch.linspace(-0.5, 2.5, 7)
    gx, gz = torch.meshgrid(xs, zs, indexing="ij")
    verts = torch.stack([gx, torch.full_like(gx, 0.3), gz], -1).reshape(1, -1, 3)
    q = torch.arange(35).view(5, 7)
    a, b, c, d = q[:-1, :-1], q[1:, :-1], q[1:, 1:], q[:-1, 1:]
    faces = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([a, c, d], -1).reshape(-1, 3)])
    frags = rasterize(verts, faces, cam.K, 32, 32, near=0.1)
    visible = (verts[0, faces, 2] > 0.1).all(1)
    assert 0 < visible.sum() < faces.shape[0]
    seen = frags.face_id[frags.face_id >= 0].unique()
    assert visible[seen].all() and seen.numel() > 0
    kept = rasterize(verts, faces[visible], cam.K, 32, 32, near=0.1)
    assert torch.equal(frags.face_id, torch.where(kept.face_id >= 0, visible.nonzero()[:, 0][kept.face_id], -1))
    assert torch.isfinite(frags.bary).all() and torch.isfinite(frags.depth).all()


def test_backface_culling_is_exact_on_closed_meshes_and_removes_faces_seen_from_behind():
    cam = _camera(150.0, 48, 64)
    v, faces = _sphere(3, 0.3, (0.02, 0.01, 2.0))
    verts = v + 0.005 * torch.randn(v.shape, generator=torch.Generator().manual_seed(2))
    both = render_normal_depth(verts, faces, cam)
    front = render_normal_depth(verts, faces, cam, cull_backfaces=True)
    assert torch.equal(both.fragments.face_id, front.fragments.face_id)
    keep = rasterize_module.kept_faces(verts, faces, cam.K, 1e-2, True)[0]
    assert 0.3 < keep.float().mean() < 0.7 and keep[front.fragments.face_id[front.mask[:, 0] > 0]].all()
    # A quad facing away from the camera is drawn (normal +z) unless back faces are culled.
    quad = torch.tensor([[-3.0, -3.0, 2.0], [3.0, 3.0, 2.0], [-3.0, 3.0, 2.0], [3.0, -3.0, 2.0]])[None]
    away = torch.tensor([[0, 1, 2], [0, 3, 1]])
    drawn = render_normal_depth(quad, away, cam)
    assert drawn.mask.all() and torch.allclose(drawn.normal[:, 2], torch.ones(1, 48, 64))
    assert render_normal_depth(quad, away, cam, cull_backfaces=True).mask.sum() == 0


@pytest.mark.parametrize("case", ["no_faces", "off_screen"])
def test_empty_image(case):
    cam = _camera(50.0, 16, 24)
    verts, faces = _sphere(1, 0.2, (5.0, 0.0, 2.0) if case == "off_screen" else (0.0, 0.0, 2.0))
    if case == "no_faces":
        faces = faces[:0]
    verts.requires_grad_(True)
    out = render_normal_depth(verts, faces, cam)
    assert out.mask.sum() == 0 and out.depth.abs().sum() == 0 and out.normal.abs().sum() == 0
    assert (out.fragments.face_id == -1).all()
    (out.normal.sum() + out.depth.sum()).backward()
    assert verts.grad is not None and verts.grad.abs().sum() == 0
    assert normal_to_image(out.normal).abs().sum() == 0


def test_interpolate_broadcasts_attributes_and_validates_shapes():
    cam = _camera(80.0, 20, 20)
    verts, faces = _sphere(2, 0.3, (0.0, 0.0, 2.0))
    frags = rasterize(verts.expand(2, -1, -1), faces, cam.K, 20, 20)
    attr = verts[..., 2:]  # 1 x N x 1 depth attribute, broadcast over the batch
    torch.testing.assert_close(interpolate(attr, frags, faces)[..., 0], frags.depth, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="N x C"):
        interpolate(verts[0], frags, faces)
    with pytest.raises(ValueError, match="B x N x 3"):
        rasterize(verts[0], faces, cam.K, 20, 20)
    with pytest.raises(ValueError, match="unknown renderer backend"):
        get_rasterizer("opengl")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cam = _camera(200.0, 64, 48)
    verts, faces = _sphere(3, 0.3, (0.0, 0.0, 2.0))
    cpu = render_normal_depth(verts, faces, cam)
    gpu = render_normal_depth(verts.cuda(), faces.cuda(), cam.to("cuda"))
    assert torch.equal(cpu.fragments.face_id, gpu.fragments.face_id.cpu())
    torch.testing.assert_close(cpu.normal, gpu.normal.cpu(), rtol=0, atol=1e-5)


def test_backend_coordinate_conversions_land_on_our_pixel_centres():
    # nvdiffrast samples pixel (i, j) at NDC ((2j + 1) / W - 1, (2i + 1) / H - 1), row 0 at y = -1;
    # pytorch3d at ((W - 2j - 1) / s, (H - 2i - 1) / s), s = min(H, W). Both must meet our centres.
    h, w = 24, 40
    K = torch.tensor([[[55.0, 0.0, 19.0], [0.0, 60.0, 13.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    pts = torch.tensor([[[0.1, -0.2, 1.5], [-0.3, 0.05, 2.0], [0.0, 0.0, 3.0]]], dtype=torch.float64)
    uv = project_points(pts, K)
    clip = clip_space(pts, K, h, w, near=0.1, far=10.0)
    ndc = clip[..., :3] / clip[..., 3:]
    torch.testing.assert_close(ndc[..., 0], 2 * uv[..., 0] / w - 1)
    torch.testing.assert_close(ndc[..., 1], 2 * uv[..., 1] / h - 1)
    assert ((ndc[..., 2] > -1) & (ndc[..., 2] < 1)).all() and torch.equal(clip[..., 3], pts[..., 2])
    p3d = to_ndc(pts, K, h, w)
    torch.testing.assert_close(p3d[..., 0], (w - 2 * uv[..., 0]) / min(h, w))
    torch.testing.assert_close(p3d[..., 1], (h - 2 * uv[..., 1]) / min(h, w))


@pytest.mark.parametrize("backend", ["nvdiffrast", "pytorch3d"])
def test_missing_backend_raises_import_error_naming_the_package(backend):
    if importlib.util.find_spec(backend) is not None:
        pytest.skip(f"{backend} is installed")
    verts, faces = _sphere(1, 0.2, (0.0, 0.0, 2.0))
    with pytest.raises(ImportError, match=backend):
        render_normal_depth(verts, faces, _camera(50.0, 16, 16), backend=backend)


def _agreement(backend: str, device: str, cull_backfaces: bool = False) -> None:
    # A batch of two (the second perturbed), so that per-element face culling is exercised too.
    cam = _camera(300.0, 96, 128).to(device).expand(2)
    v, faces = _sphere(4, 0.5, (0.05, -0.02, 3.0))
    verts = torch.cat([v, v + 0.01 * torch.randn(v.shape, generator=torch.Generator().manual_seed(5))])
    verts, faces = verts.to(device), faces.to(device)
    ours = render_normal_depth(verts, faces, cam, cull_backfaces=cull_backfaces)
    theirs = render_normal_depth(verts, faces, cam, backend=backend, cull_backfaces=cull_backfaces)
    same = ours.fragments.face_id == theirs.fragments.face_id
    assert same.float().mean() > 0.995  # only ties at pixel centres on edges may differ
    assert (ours.mask != theirs.mask).float().mean() < 0.002
    both = same[:, None] & (ours.mask > 0)
    torch.testing.assert_close(ours.depth[both], theirs.depth[both], rtol=1e-4, atol=0)
    torch.testing.assert_close(ours.normal.permute(0, 2, 3, 1)[both[:, 0]],
                               theirs.normal.permute(0, 2, 3, 1)[both[:, 0]], rtol=0, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvdiffrast needs CUDA")
def test_nvdiffrast_backend_agrees():
    pytest.importorskip("nvdiffrast.torch")
    _agreement("nvdiffrast", "cuda")


@pytest.mark.parametrize("cull", [False, True])
def test_pytorch3d_backend_agrees(cull):
    pytest.importorskip("pytorch3d")
    _agreement("pytorch3d", "cuda" if torch.cuda.is_available() else "cpu", cull)
