"""Unit tests of the expression transfer module: encoder, identity geometry, G, transfer(), save/load."""

import math

import pytest
import torch

from exphead.head_model import HeadParams
from exphead.synthetic.subject import make_subject
from exptransfer import ExpressionEncoder, ExpressionTransfer, identity_geometry, load_transfer, transfer
from exptransfer.identity import detail_heights, head_frame
from exptransfer.synthetic import make_creased_subject


def _rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
    k = torch.nn.functional.normalize(axis, dim=0)
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return torch.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


@pytest.fixture(scope="module")
def subject(head_model):
    return make_creased_subject(head_model, seed=7, num_frames=4, age=0.8, resting_creases=0.15)


@pytest.fixture(scope="module")
def head(head_model, subject):
    return subject.head(head_model)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = ExpressionTransfer(code_dim=16, encoder_hidden=32, hidden_dim=32, num_layers=2, num_frequencies=4).eval()
    assert net.geometry_mlp.head.weight.abs().max() == 0  # an untrained module predicts no offsets
    torch.nn.init.normal_(net.geometry_mlp.head.weight, std=0.5)  # stand-in for training
    return net


def test_encoder_shapes_and_temporal_receptive_field():
    torch.manual_seed(0)
    enc = ExpressionEncoder(code_dim=8, hidden_dim=16, temporal_kernel=3, num_blocks=1).eval()
    psi, omega = torch.randn(2, 7, 100), torch.randn(2, 7, 3) * 0.1
    q = enc(psi, omega)
    assert q.shape == (2, 7, 8)
    assert torch.allclose(enc(psi[0], omega[0]), q[0], atol=1e-6)  # unbatched input
    assert enc(psi[:, :1], omega[:, :1]).shape == (2, 1, 8)  # F = 1 is padding-safe
    # one centred block of 3 frames: changing frame 3 moves q_2..q_4 only
    psi2 = psi.clone()
    psi2[:, 3] += 1.0
    changed = (enc(psi2, omega) - q).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [False, False, True, True, True, False, False]
    # a constant sequence encodes to a constant code (replicate padding)
    qc = enc(psi[:, :1].expand(-1, 5, -1), omega[:, :1].expand(-1, 5, -1))
    assert torch.allclose(qc, qc[:, :1].expand_as(qc), atol=1e-6)
    with pytest.raises(ValueError, match="temporal_kernel"):
        ExpressionEncoder(temporal_kernel=2)
    with pytest.raises(ValueError, match="ψ"):
        enc(torch.randn(7, 50), torch.randn(7, 3))


def test_head_frame_is_orthonormal_and_landmark_anchored(head_model, head):
    landmarks = head_model.landmarks_of(head.neutral()[None])[0]
    origin, rotation, scale = head_frame(landmarks)
    assert torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-5)
    assert torch.det(rotation) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(origin, landmarks[[36, 39, 42, 45]].mean(0))
    assert scale == pytest.approx(float((landmarks[45] - landmarks[36]).norm()))
    # the canonical head already faces +z with y up
    assert rotation[2, 2] > 0.95 and rotation[1, 1] > 0.95


def test_identity_geometry_frame_features_are_similarity_invariant(head_model, head):
    """Translating, rotating and scaling V_neutral leaves positions, normals and landmarks (head frame) unchanged."""
    neutral = head.neutral()
    g = identity_geometry(head_model, neutral, head.betas[0])
    r = _rotation(torch.tensor([0.3, 1.0, 0.2]), 0.4)
    h = identity_geometry(head_model, 1.2 * neutral @ r.T + torch.tensor([0.05, -0.1, 0.3]), head.betas[0])
    assert torch.allclose(g.positions, h.positions, atol=2e-5)
    assert torch.allclose(g.normals, h.normals, atol=1e-4)
    assert torch.allclose(g.landmarks, h.landmarks, atol=2e-5)
    assert torch.allclose(h.rotation, g.rotation @ r.T, atol=1e-5)
    assert g.positions.shape == (int(head_model.face_mask.sum()), 3) and g.detail.shape[1] == 4
    with pytest.raises(ValueError, match="N_s x 3"):
        identity_geometry(head_model, neutral[:100])


def test_detail_features_see_resting_creases(head_model):
    """No personal detail on the face -> zero detail features; resting creases -> negative (inward) heights
    where they are, proportional to their depth."""
    plain = make_creased_subject(head_model, 3, 1, age=0.9, resting_creases=0.0).head(head_model)
    g0 = identity_geometry(head_model, plain.neutral(), plain.betas[0])
    assert g0.detail.abs().max() < 1e-3  # mm: float rounding only (exphead's Δg is zero on the face)
    depths = []
    for rho in (0.1, 0.3):
        creased = make_creased_subject(head_model, 3, 1, age=0.9, resting_creases=rho).head(head_model)
        g = identity_geometry(head_model, creased.neutral(), creased.betas[0])
        crease = (creased.delta_g - plain.delta_g).norm(dim=-1)[head_model.face_mask > 0] * 1000
        deep = crease > 0.5 * crease.max()
        rel = (g.detail[deep, 0] + crease[deep]) / crease[deep]  # raw height vs depth: 0 up to normal tilt
        assert rel.abs().median() < 0.01 and (rel.abs() < 0.05).float().mean() > 0.97
        assert (g.detail[deep, 1:].mean(0) < 0).all()  # grooves sit below their smoothed surroundings
        depths.append(g.detail[deep].mean(0))
    assert torch.allclose(depths[1], 3 * depths[0], rtol=0.03)  # linear up to the normals tilting


def test_detail_heights_on_a_sphere():
    """For the positions of a sphere as the offset field, the raw height is the radius and the high-passed
    heights are positive (smoothing pulls inwards), grow with the scale and are proportional to the radius."""
    import trimesh

    from exphead.geometry import uniform_laplacian, vertex_normals

    sphere = trimesh.creation.icosphere(subdivisions=3)
    faces = torch.from_numpy(sphere.faces).long()
    lap = uniform_laplacian(faces, sphere.vertices.shape[0])
    heights = {}
    for radius in (0.05, 0.1):
        v = torch.from_numpy(sphere.vertices).float() * radius
        n = vertex_normals(v[None], faces)[0]
        h = detail_heights(lap, v, n, scales=(1, 4))
        assert torch.allclose(h[:, 0], torch.full_like(h[:, 0], radius * 1000), rtol=1e-3)
        assert (h[:, 1] > 0).all() and (h[:, 2] > h[:, 1]).all()
        heights[radius] = h
    assert torch.allclose(heights[0.1], 2 * heights[0.05], rtol=1e-4)


def test_network_shapes_chunking_anchor_and_vertex_independence(head_model, head, net):
    g = identity_geometry(head_model, head.neutral(), head.betas[0])
    ids = torch.arange(0, g.num_vertices, 37)
    geo = g.select(ids).unsqueeze()
    psi, omega = head.params.expression[None], head.params.jaw_pose[None]
    out = net(geo, psi, omega)
    assert out.shape == (1, head.num_frames, ids.numel(), 3)
    net.chunk_points = 50
    assert torch.allclose(net(geo, psi, omega), out, atol=1e-7)
    net.chunk_points = 1 << 18
    # the neutral expression gives zero offsets (up to float rounding: < 1e-9 m), any expression does not
    assert net(geo, torch.zeros_like(psi), torch.zeros_like(omega)).abs().max() < 1e-9
    assert out.abs().max() > 1e-6
    # per-vertex: a vertex's offsets do not depend on which other vertices are evaluated
    assert torch.allclose(net(g.select(ids[::3]).unsqueeze(), psi, omega), out[:, :, ::3], atol=1e-8)
    # the local frame: offsets are linear in G's output, rotated from (t1, t2, n) to world
    assert torch.allclose(out.norm(dim=-1), _local_norm(net, geo, psi, omega), atol=1e-9)


def _local_norm(net, geo, psi, omega):
    codes = net.encode(psi, omega)
    codes = torch.cat([net.encode(torch.zeros_like(psi[:, :1]), torch.zeros_like(omega[:, :1])), codes], dim=1)
    local = net.geometry_mlp(geo, codes) * net.offset_scale
    return (local[:, 1:] - local[:, :1]).norm(dim=-1)


def test_transfer_shapes_face_restriction_and_posing(head_model, head, net):
    driver = make_subject(head_model, seed=11, num_frames=3)
    res = transfer(head, driver.params, net)
    n = head_model.num_vertices
    assert res.delta_f.shape == res.canonical.shape == res.vertices.shape == (3, n, 3)
    assert res.landmarks.shape == (3, 68, 3)
    off_face = head_model.face_mask == 0
    assert res.delta_f[:, off_face].abs().max() == 0
    assert res.delta_f[:, ~off_face].abs().max() > 0
    # canonical = V_neutral + B(E ψ_driver) + Δf, posed by the driver's pose with the target's β
    params = driver.params.map(lambda v: v.clone())
    params.betas = head.betas.expand(3, -1)
    expected = head_model(params, head.delta_g, res.delta_f)
    assert torch.allclose(res.canonical, expected.canonical, atol=1e-7)
    assert torch.allclose(res.vertices, expected.vertices, atol=1e-7)
    expression_only = HeadParams.zeros(3, head_model.num_betas, head_model.num_expression)
    expression_only.expression = driver.params.expression
    blend = head_model.canonical(expression_only) - head_model.canonical(expression_only.map(lambda v: v * 0))
    assert torch.allclose(res.canonical - res.delta_f, head.neutral() + blend, atol=1e-6)
    # a bare V_neutral tensor (with β) gives the same meshes; (ψ, ω) drives without head pose
    res2 = transfer(head.neutral(), driver.params, net, model=head_model, betas=head.betas[0])
    assert torch.allclose(res2.canonical, res.canonical, atol=1e-6)
    assert torch.allclose(res2.vertices, res.vertices, atol=1e-6)
    res3 = transfer(head, (driver.params.expression, driver.params.jaw_pose), net)
    assert torch.allclose(res3.canonical, res.canonical, atol=1e-7)
    # ψ = 0, ω = 0, no pose: the target's neutral mesh
    res0 = transfer(head, (torch.zeros(1, 100), torch.zeros(1, 3)), net)
    assert res0.delta_f.abs().max() < 1e-9
    assert torch.allclose(res0.canonical[0], head.neutral(), atol=1e-7)
    with pytest.raises(ValueError, match="model"):
        transfer(head.neutral(), driver.params, net)


def test_save_load_round_trip_is_bit_exact(tmp_path, head_model, head, net):
    net.save_pretrained(tmp_path / "m")
    loaded = load_transfer(tmp_path / "m").eval()
    assert loaded.config == net.config
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    a = transfer(head, head.params, net).delta_f
    b = transfer(head, head.params, loaded).delta_f
    assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="transfer.json"):
        load_transfer(tmp_path / "missing")
