"""KPCA-CAM and FEM, the activation-only methods, against pytorch-grad-cam 1.5.7 (``KPCA_CAM``, ``FEM``).

Both sides run the same model in float64 (``model.double()``), so the maps are compared after min-max
scaling at the layer's grid within TOL: pytorch-grad-cam rounds its projection (and its scaled map) to float32
once, 2**-24 of values in [0, 1]; another kernel moves a map by 100 times as much or more (the test that
switches it). Models: seeded random timm ResNet-18/50 at 64-96 px, and the bundled Lite0 with its real weights.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("sklearn")

from pytorch_grad_cam import FEM, KPCA_CAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel  # noqa: E402

from gradcam_cli.capture import ActivationCapture  # noqa: E402
from gradcam_cli.methods import KPCA_KERNELS  # noqa: E402
from gradcam_cli.methods.fem import weights as fem_weights  # noqa: E402
from gradcam_cli.methods.kpcacam import projection  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

from helpers import max_diff, oracle_model, scaled  # noqa: E402

TOL = 1e-5
CASES = [("resnet18", "layer4", 96), ("resnet18", "layer3", 64), ("resnet50", "layer3", 64), ("lite0", "bn2", 96)]


@functools.cache
def model64(name: str) -> torch.nn.Module:
    return copy.deepcopy(oracle_model(name)).double()


@functools.cache
def inputs(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5)).double()


def activations(name: str, path: str, size: int) -> torch.Tensor:
    m = model64(name)
    capture = ActivationCapture({path: m.get_submodule(path)}, make_leaf=False)
    with capture.installed(), torch.no_grad():
        m(inputs(size))
        return capture.outputs[path].clone()


def pgc_map(cam_class, name: str, path: str, size: int, hw, **kw) -> torch.Tensor:
    m = copy.deepcopy(model64(name))
    with cam_class(model=m, target_layers=[m.get_submodule(path)], **kw) as cam:
        cam.get_target_width_height = lambda _t: (hw[1], hw[0])
        out = cam(input_tensor=inputs(size).clone(), targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(0)])
    return scaled(torch.from_numpy(np.asarray(out, dtype=np.float64)))


def ours(name: str, path: str, size: int, method: str, settings=None, top_k: int = 1):
    m = model64(name)
    res = explain_batch(
        m, inputs(size), {path: m.get_submodule(path)}, methods=[method], settings=settings, top_k=top_k
    )
    return res.maps[method, path]


@pytest.mark.parametrize("kernel", KPCA_KERNELS)
@pytest.mark.parametrize("name,path,size", CASES)
def test_kpcacam_matches_pytorch_grad_cam_up_to_the_sign(name: str, path: str, size: int, kernel: str) -> None:
    """The projection equals scikit-learn's (which pytorch-grad-cam calls) times +1 or -1; our map is theirs for
    that sign, and pytorch-grad-cam's own map is that projection with the sign scikit-learn chose."""
    acts = activations(name, path, size)
    reference = torch.from_numpy(get_2d_projection_kernel(acts.numpy(), kernel)).double()
    mine = projection(acts, kernel)
    sign = torch.sign((mine * reference).flatten(1).sum(1))[:, None, None]
    assert (sign != 0).all()
    peak = reference.flatten(1).abs().amax(1)[:, None, None]
    assert max_diff(mine / mine.flatten(1).abs().amax(1)[:, None, None], sign * reference / peak) <= TOL
    ours_map = scaled(ours(name, path, size, "kpcacam", {"kpca_kernel": kernel})[:, 0])
    assert max_diff(ours_map, scaled(torch.relu(sign * reference))) <= TOL
    theirs = pgc_map(KPCA_CAM, name, path, size, ours_map.shape[-2:], kernel=kernel)
    assert max_diff(theirs, scaled(torch.relu(reference))) <= TOL


def test_kpcacam_kernels_give_different_maps() -> None:
    """The kernel setting reaches the computation: on a random-init network the kernels' arguments are small
    (gamma = 1/C), so the kernels are nearly linear and the maps close, yet 100 times TOL apart."""
    maps = {k: scaled(ours("resnet18", "layer3", 64, "kpcacam", {"kpca_kernel": k})[:, 0]) for k in KPCA_KERNELS}
    for a in KPCA_KERNELS:
        for b in KPCA_KERNELS:
            assert a == b or max_diff(maps[a], maps[b]) > 100 * TOL, (a, b)


def test_kpcacam_sign_points_where_the_layer_is_active() -> None:
    acts = torch.zeros(1, 4, 5, 5, dtype=torch.float64)
    acts[0, :, 1:3, 1:3] = torch.tensor([3.0, 2.0, 1.0, 4.0], dtype=torch.float64)[:, None, None]
    projected = projection(acts, "linear")[0]
    assert projected[1:3, 1:3].min() > 0 >= projected.max() * 0 and projected[0, 0] < 0


@pytest.mark.parametrize("name,path,size", CASES)
def test_fem_matches_pytorch_grad_cam(name: str, path: str, size: int) -> None:
    mine = ours(name, path, size, "fem")
    ours_map = scaled(mine[:, 0])
    assert max_diff(ours_map, pgc_map(FEM, name, path, size, ours_map.shape[-2:])) <= TOL


def test_fem_weights_count_the_positions_above_two_sigmas() -> None:
    """One channel with one outlier among 25 positions: weight 1/25; a constant channel: 0."""
    acts = torch.zeros(1, 2, 5, 5, dtype=torch.float64)
    acts[0, 0, 2, 2] = 10.0
    acts[0, 1] = 3.0
    assert fem_weights(acts).tolist() == [[1 / 25, 0.0]]


@pytest.mark.parametrize("method", ["kpcacam", "fem"])
def test_activation_methods_are_class_agnostic(method: str) -> None:
    maps = ours("resnet18", "layer4", 96, method, top_k=3)
    assert torch.equal(maps[:, 0], maps[:, 1]) and torch.equal(maps[:, 0], maps[:, 2])
