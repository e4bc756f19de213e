"""ROAD's batched imputation where its multigrid preconditioner is not positive definite.

The mask is ROAD's least-relevant-first 40 % of Eigen-CAM's map of sample_images/hot_dog.jpg at 224 x 224 (packed
bits): on it the V-cycle's coarse-grid Jacobi sweeps make r . Br negative, conjugate gradients break down and,
before the direct-solve fallback, every channel came out NaN.
"""

import numpy as np
import torch

from gradcam_cli.metrics.road_imputation import impute_removed, noisy_linear_imputation

from helpers import ROOT


def _mask() -> torch.Tensor:
    bits = np.load(ROOT / "tests" / "data" / "road_mask_hot_dog_lerf40.npy")
    return torch.from_numpy(np.unpackbits(bits)[: 224 * 224].astype(bool)).view(1, 224, 224)


def test_a_mask_where_cg_breaks_down_is_solved_as_the_sparse_solve_does() -> None:
    removed = _mask()
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    out = impute_removed(image, removed)
    assert torch.isfinite(out).all()
    # The reference in float64; the bound is the one every other imputation test uses (1e-4).
    reference = noisy_linear_imputation(image[0].double().numpy(), removed.flatten().numpy(), noise=0.0)
    assert np.abs(out[0].double().numpy() - reference).max() <= 1e-4
    # Kept pixels are the input's, bit for bit.
    assert torch.equal(out[0][:, ~removed[0]], image[0][:, ~removed[0]])


def test_the_other_systems_of_the_batch_keep_the_batched_solution() -> None:
    removed = torch.cat([_mask(), torch.rand(1, 224, 224, generator=torch.Generator().manual_seed(1)) < 0.3])
    image = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    out = impute_removed(image, removed)
    for n in range(2):
        reference = noisy_linear_imputation(image[n].double().numpy(), removed[n].flatten().numpy(), noise=0.0)
        assert np.abs(out[n].double().numpy() - reference).max() <= 1e-4
