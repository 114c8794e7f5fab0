import numpy as np
import pytest
import torch

from exphead.body_model import load_body_model, resolve_model_file
from exphead.head_model import HeadParams


def test_procedural_model_loads_through_smplx_with_full_spaces():
    model = load_body_model()
    assert model.num_betas == 300
    assert model.num_expression_coeffs == 100
    out = model(return_verts=True)
    assert torch.isfinite(out.vertices).all()
    # extra keypoints (nose, eyes, ears) were remapped onto this mesh
    assert model.vertex_joint_selector.extra_joints_idxs.max() < model.v_template.shape[0]


def test_missing_file_names_the_option(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="SMPLX_MODEL_PATH"):
        resolve_model_file(tmp_path / "nope" / "SMPLX_NEUTRAL.npz")
    monkeypatch.setenv("SMPLX_MODEL_PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"SMPLX_NEUTRAL\.npz"):
        resolve_model_file()


def test_malformed_and_misnamed_files(tmp_path):
    bad = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(bad, v_template=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="missing arrays"):
        load_body_model(bad)
    garbage = tmp_path / "SMPLX_MALE.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_body_model(garbage)
    misnamed = tmp_path / "model.npz"
    misnamed.write_bytes(b"x")
    with pytest.raises(ValueError, match="SMPLX_"):
        resolve_model_file(misnamed)


def test_env_var_is_used(tmp_path, monkeypatch):
    from exphead.procedural import write_procedural_smplx

    path = write_procedural_smplx(tmp_path)
    monkeypatch.setenv("SMPLX_MODEL_PATH", str(path))
    assert resolve_model_file() == path


def test_level0_head_model_matches_smplx_forward(coarse_head_model):
    """Our LBS on the subset equals smplx's own forward pass (same file, same parameters)."""
    body = load_body_model()
    g = torch.Generator().manual_seed(0)
    p = HeadParams.zeros(2)
    p.betas = torch.randn(2, 300, generator=g) * 0.5
    p.expression = torch.randn(2, 100, generator=g) * 0.5
    for name in ("global_orient", "neck_pose", "head_pose", "jaw_pose", "leye_pose", "reye_pose"):
        setattr(p, name, torch.randn(2, 3, generator=g) * 0.2)
    p.transl = torch.randn(2, 3, generator=g) * 0.1
    body_pose = torch.zeros(2, 21, 3)
    body_pose[:, 11], body_pose[:, 14] = p.neck_pose, p.head_pose
    ref = body(betas=p.betas, expression=p.expression, global_orient=p.global_orient,
               body_pose=body_pose.reshape(2, -1), jaw_pose=p.jaw_pose, leye_pose=p.leye_pose,
               reye_pose=p.reye_pose, transl=p.transl, left_hand_pose=torch.zeros(2, 45),
               right_hand_pose=torch.zeros(2, 45))
    ours = coarse_head_model(p)
    idx = coarse_head_model.subset_index
    torch.testing.assert_close(ours.vertices, ref.vertices[:, idx], atol=1e-5, rtol=0)
    # smplx appends 51 static + 17 contour landmarks; ours are in iBUG-68 order
    lmk = ref.joints[:, -68:]
    torch.testing.assert_close(ours.landmarks, torch.cat([lmk[:, 51:], lmk[:, :51]], 1), atol=1e-5, rtol=0)
