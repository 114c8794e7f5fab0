import math

import torch

from exphead.geometry import apply_sparse
from exphead.head_model import HeadParams
from exphead.mesh_io import export_mesh
from exphead.subdivision import barycentric_upsampling


def test_upsampling_reproduces_affine_functions(head_model):
    B = head_model.upsample
    coarse = head_model.v_template[None]
    A = torch.tensor([[1.3, -0.2, 0.5], [0.1, 0.9, -0.4], [0.0, 0.7, 1.1]])
    c = torch.tensor([0.3, -1.0, 2.0])
    lhs = apply_sparse(B, coarse @ A.T + c)
    rhs = apply_sparse(B, coarse) @ A.T + c
    torch.testing.assert_close(lhs, rhs, atol=1e-5, rtol=0)
    ones = apply_sparse(B, torch.ones(1, head_model.num_coarse, 1))
    torch.testing.assert_close(ones, torch.ones_like(ones))


def test_dense_mesh_sizes_and_watertight_edges(head_model):
    n, ns = head_model.num_coarse, head_model.num_vertices
    assert head_model.faces.shape[0] == 16 * head_model.coarse_faces.shape[0]
    assert ns > 15.5 * n  # V + 3E + 3F: 16N - 30 on a closed genus-0 mesh
    # every interior dense edge is shared by exactly two faces, like the coarse mesh
    def boundary_edges(faces):
        e = torch.sort(torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1).values
        _, counts = torch.unique(e, dim=0, return_counts=True)
        assert counts.max() == 2
        return (counts == 1).sum().item()
    assert boundary_edges(head_model.faces) == 4 * boundary_edges(head_model.coarse_faces)


def test_upsampling_small_mesh_counts():
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    up = barycentric_upsampling(faces, 4, level=1)
    assert up.matrix.shape == (4 + 5 + 0, 4)  # 5 edge midpoints, no interior points at level 1
    assert up.faces.shape == (8, 3)


def test_zero_pose_lbs_is_identity(head_model):
    p = HeadParams.zeros(2)
    p.betas[1, :5] = 1.0
    p.expression[1, :3] = 1.0
    delta = torch.randn(2, head_model.num_vertices, 3) * 1e-3
    out = head_model(p, delta_f=delta)
    torch.testing.assert_close(out.vertices, out.canonical, atol=1e-6, rtol=0)


def test_jaw_opens_mouth_and_expressions_move_only_the_face(head_model):
    p = HeadParams.zeros(3)
    p.jaw_pose[1, 0] = 0.25
    p.expression[2, 0] = 2.0  # smile
    lm = head_model(p).landmarks
    chin_drop = lm[0, 8, 1] - lm[1, 8, 1]
    lip_gap = (lm[1, 62, 1] - lm[1, 66, 1]) - (lm[0, 62, 1] - lm[0, 66, 1])
    assert chin_drop > 0.01 and lip_gap > 0.005
    torch.testing.assert_close(lm[1, 36:48], lm[0, 36:48], atol=2e-4, rtol=0)  # eyes stay (< 0.2 mm)
    corners_up = (lm[2, [48, 54], 1] - lm[0, [48, 54], 1])
    assert (corners_up > 0.004).all()
    neutral = head_model.canonical(p)[0]
    motion = (head_model.canonical(p)[2] - neutral).norm(dim=-1)
    assert motion.max() > 0.005
    assert motion[(neutral[:, 2] < 0) | (neutral[:, 1] < 0.04)].max() < 1e-6  # back of head, neck, shoulders
    assert motion[head_model.face_mask > 0].sum() > 0.9 * motion.sum()


def test_face_region_covers_the_face_only(head_model):
    neutral = head_model.canonical(HeadParams.zeros(1))[0]
    lm = head_model.landmarks_of(neutral[None])[0]
    nearest = torch.cdist(lm, neutral).argmin(1)
    assert head_model.face_mask[nearest[17:68]].all()  # brows, nose, eyes, lips
    back = neutral[:, 2] < 0
    assert head_model.face_mask[back].sum() == 0
    assert head_model.face_mask[neutral[:, 1] < 0.0].sum() == 0  # neck and shoulders
    frac = head_model.face_mask.mean().item()
    assert 0.1 < frac < 0.4


def test_landmarks_lie_on_the_coarse_surface(head_model, coarse_head_model):
    p = HeadParams.zeros(1)
    p.expression[0, :10] = 0.5
    torch.testing.assert_close(head_model.landmarks_of(head_model.canonical(p)),
                               coarse_head_model.landmarks_of(coarse_head_model.canonical(p)), atol=1e-6, rtol=0)


def test_landmark_gradients_match_finite_differences(coarse_head_model):
    model = coarse_head_model.double()
    p = HeadParams.zeros(1, dtype=torch.float64)
    p.expression = torch.zeros(1, 100, dtype=torch.float64, requires_grad=True)
    p.jaw_pose = torch.tensor([[0.1, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)

    def f(expr, jaw):
        q = HeadParams(**{**p.to_dict(), "expression": expr, "jaw_pose": jaw})
        return model(q).landmarks[..., :2].sum() + model(q).landmarks[0, 57, 1]
    assert torch.autograd.gradcheck(f, (p.expression, p.jaw_pose), eps=1e-6, atol=1e-6)
    model.float()


def test_export_roundtrip(tmp_path, head_model):
    import trimesh

    v = head_model.canonical(HeadParams.zeros(1))[0]
    for name in ("head.ply", "head.obj"):
        path = export_mesh(tmp_path / name, v, head_model.faces)
        mesh = trimesh.load(path, process=False)
        assert mesh.faces.shape == tuple(head_model.faces.shape)
        assert abs(mesh.vertices - v.numpy()).max() < 1e-5


def test_posed_landmarks_fast_path_matches_full_forward(head_model):
    g = torch.Generator().manual_seed(3)
    p = HeadParams.zeros(2)
    p.expression = torch.randn(2, 100, generator=g)
    p.jaw_pose[:, 0] = 0.2
    p.head_pose = torch.randn(2, 3, generator=g) * 0.2
    p.transl = torch.randn(2, 3, generator=g) * 0.1
    dg = torch.randn(head_model.num_vertices, 3, generator=g) * 1e-3
    df = torch.randn(2, head_model.num_vertices, 3, generator=g) * 1e-3
    torch.testing.assert_close(head_model.posed_landmarks(p, dg, df), head_model(p, dg, df).landmarks,
                               atol=1e-6, rtol=0)


def test_axis_angle_roundtrip_and_relative_composition():
    from exphead.rotations import axis_angle_to_matrix, compose_relative, matrix_to_axis_angle

    g = torch.Generator().manual_seed(0)
    aa = torch.randn(200, 3, generator=g)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(200, 1, generator=g) * 3.1
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(aa)), aa, atol=1e-4, rtol=0)
    base = torch.tensor([[0.1, 0.2, 0.0]])
    ref = torch.tensor([[0.0, 0.3, 0.0]])
    torch.testing.assert_close(compose_relative(base, ref, ref), base, atol=1e-6, rtol=0)


def test_relative_head_motion_changes_the_angles_by_the_drivers_change():
    """A driver turned 25 degrees to the side that nods from -20 to 20 degrees: the portrait (its own yaw, pitch and
    roll) nods by the same amounts and keeps its heading and tilt; the angles round-trip. The matrix product of the
    driver's change with the portrait's rotation nods the portrait about the driver's turned axis: it tilts too."""
    from exphead.rotations import (
        axis_angle_to_matrix,
        compose_relative,
        euler_to_matrix,
        matrix_to_axis_angle,
        matrix_to_euler,
    )

    g = torch.Generator().manual_seed(1)
    angles = (torch.rand(100, 3, generator=g) - 0.5) * torch.tensor([3.0, 1.6, 3.0])  # pitch within +-0.8 rad
    torch.testing.assert_close(matrix_to_euler(euler_to_matrix(angles)), angles, atol=1e-5, rtol=0)
    R = euler_to_matrix(torch.tensor([0.3, 0.2, 0.1]))
    normal = R[:, 2]  # the face's normal: azimuth yaw, elevation -pitch
    assert abs(math.atan2(normal[0], normal[2]) - 0.3) < 1e-5 and abs(math.asin(normal[1]) + 0.2) < 1e-5

    nod = torch.linspace(-0.35, 0.35, 9)
    zero = torch.zeros_like(nod)
    driver = torch.stack([torch.full_like(nod, 0.44), nod, zero], -1)
    portrait = torch.tensor([[0.05, -0.09, 0.03]])
    aa = lambda e: matrix_to_axis_angle(euler_to_matrix(e))  # noqa: E731
    out = compose_relative(aa(portrait).expand(9, -1), aa(driver), aa(driver[4:5]).expand(9, -1))
    expected = portrait + torch.stack([zero, nod, zero], -1)
    torch.testing.assert_close(matrix_to_euler(axis_angle_to_matrix(out)), expected, atol=1e-5, rtol=0)
    Rd = axis_angle_to_matrix(aa(driver))
    product = Rd @ Rd[4:5].transpose(-1, -2) @ axis_angle_to_matrix(aa(portrait))
    assert (matrix_to_euler(product)[:, 2] - portrait[0, 2]).abs().max() > 0.1  # the old composition tilts


def test_posing_matches_smplx_on_the_subset(coarse_head_model):
    """The head model poses P exactly as smplx's own SMPL-X forward does (its 13-joint skeleton, 5 posed joints'
    correctives and level-by-level transform composition are an exact shortcut)."""
    from exphead.body_model import load_body_model
    from exphead.head_model import HeadParams

    model = coarse_head_model
    body = load_body_model(None, num_betas=model.num_betas, num_expression_coeffs=model.num_expression)
    g = torch.Generator().manual_seed(0)
    p = HeadParams.zeros(3, model.num_betas, model.num_expression)
    for name in ("global_orient", "neck_pose", "head_pose", "jaw_pose", "leye_pose", "reye_pose"):
        setattr(p, name, torch.randn(3, 3, generator=g) * 0.3)
    p.betas[:, :10] = torch.randn(3, 10, generator=g)
    p.expression[:, :10] = torch.randn(3, 10, generator=g)
    p.transl = torch.randn(3, 3, generator=g) * 0.1
    body_pose = torch.zeros(3, 21, 3)
    body_pose[:, 11], body_pose[:, 14] = p.neck_pose, p.head_pose  # joints 12 and 15 (body pose omits the root)
    with torch.no_grad():
        ref = body(betas=p.betas, expression=p.expression, global_orient=p.global_orient, body_pose=body_pose,
                   jaw_pose=p.jaw_pose, leye_pose=p.leye_pose, reye_pose=p.reye_pose, transl=p.transl,
                   left_hand_pose=torch.zeros(3, 45), right_hand_pose=torch.zeros(3, 45))
        ours = model(p)
    assert torch.allclose(ours.vertices, ref.vertices[:, model.subset_index], atol=1e-5)
    assert torch.allclose(ours.joints, ref.joints[:, model.skeleton], atol=1e-5)


def test_level_by_level_transforms_match_smplx():
    from smplx.lbs import batch_rigid_transform, batch_rodrigues

    from exphead.lbs import joint_transforms

    parents = torch.tensor([-1, 0, 0, 1, 3, 2, 5, 5, 7])
    rot = batch_rodrigues(torch.randn(2 * 9, 3) * 0.5).reshape(2, 9, 3, 3)
    joints = torch.randn(2, 9, 3)
    for a, b in zip(batch_rigid_transform(rot, joints, parents), joint_transforms(rot, joints, parents)):
        assert torch.allclose(a, b, atol=1e-6)


def test_similarity_transform_recovers_a_known_one():
    """Points turned, scaled by 1.3 and moved (3D, 5 frames): the transform comes back, and a reflection is never
    returned as a rotation."""
    from exphead.geometry import similarity_transform
    from exphead.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(2)
    reference = torch.randn(13, 3, generator=g)
    rotation = axis_angle_to_matrix(torch.randn(5, 3, generator=g) * 0.5)
    shift = torch.randn(5, 3, generator=g)
    points = (reference - shift[:, None]) @ rotation / 1.3  # reference = 1.3 * points @ rotation^T + shift
    scale, found, translation = similarity_transform(points, reference)
    torch.testing.assert_close(scale, torch.full((5,), 1.3), atol=1e-4, rtol=0)
    torch.testing.assert_close(found, rotation, atol=1e-4, rtol=0)
    torch.testing.assert_close(translation, shift, atol=1e-4, rtol=0)
    assert torch.allclose(torch.linalg.det(similarity_transform(-points, reference)[1]), torch.ones(5), atol=1e-5)
