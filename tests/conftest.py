import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

import pytest  # noqa: E402
import torch  # noqa: E402

# Keep tests independent of the user's cache and of a real SMPL-X install.
os.environ.setdefault("EXPPORTRAIT_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "exp"))
os.environ.pop("SMPLX_MODEL_PATH", None)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def head_model():
    from exphead.head_model import HeadModel

    return HeadModel()


@pytest.fixture(scope="session")
def coarse_head_model():
    from exphead.head_model import HeadModel

    return HeadModel(level=0)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (small convolutions are faster than on two busy ones)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
