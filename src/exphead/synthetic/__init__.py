"""Synthetic subjects with full ground truth (β, Δg, Δf(i), ψ_i, pose, camera; RGB, normal, depth and landmark
renders): the data that lets tests and benchmarks measure accuracy. Test data, not a substitute for the real path."""

from .details import expression_details, static_offsets
from .storage import save_subject, write_synthetic_subject
from .subject import SubjectRenders, SyntheticSubject, driving_sequence, make_subject, render_subject

__all__ = ["SubjectRenders", "SyntheticSubject", "driving_sequence", "expression_details", "make_subject",
           "render_subject", "save_subject", "static_offsets", "write_synthetic_subject"]
