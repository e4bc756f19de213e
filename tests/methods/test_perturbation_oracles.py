"""Score-CAM, Ablation-CAM and occlusion against independent implementations, and the passes they run.

These methods run the network once per channel (or window), so the comparisons use small
inputs (32-64 px): the definitions do not depend on the scale. pytorch-grad-cam's
conventions differ from the papers (see the methods' docstrings); each comparison switches
the same convention on. Every comparison runs its models and inputs in float64 (TOL), but
where pytorch-grad-cam's Ablation-CAM rounds its class scores to float32 (bounded from the
weights it computed: ``ablation_bound``) and for occlusion, which runs in float32 whatever
the model (bounded by ours' float32 error on its own passes: ``occlusion_bound``).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("torchcam")
pytest.importorskip("captum")

from captum.attr import Occlusion  # noqa: E402
from pytorch_grad_cam import AblationCAM, ScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from gradcam_cli.maps.scale import normalize_minmax  # noqa: E402
from gradcam_cli.methods.occlusion import window_masks  # noqa: E402
from gradcam_cli.model.hooks import installed  # noqa: E402
from gradcam_cli.model.tail import LayerTail, WholeNetworkTail  # noqa: E402
from gradcam_cli.passes import PassState, explain_batch  # noqa: E402

from helpers import SAMPLES, U32, default_dtype, gamma32, max_diff, minmax_bound, scaled  # noqa: E402
from helpers import oracle_model as model  # noqa: E402

# Max abs difference between min-max scaled maps computed in float64 on both sides: float64 rounding is ~1e-16
# per operation, and the one float32 rounding pytorch-grad-cam gives its scaled maps is 2**-24 of [0, 1].
TOL = 1e-5

# (model, layer, input size): each at a layer with few enough channels to run the network once per channel in
# float64 (6-8x the cost of float32 on a CPU). The default layers of ResNet-50, VGG-16, ConvNeXt-T and Lite0 have
# 768-2048 channels; benchmarks/methods.py compares there. The two kinds of layer these methods treat differently:
# ReLU'd (ResNet-18's layer2 at 16 px: a 2x2 grid, 36 of its 128 channels constant, as at its default layer4 at
# 64 px) and signed (Lite0's linear bottleneck, real weights and photos).
SCORE_CASES = [
    ("resnet18", "layer2", 16),
    ("lite0", "blocks.2", 32),  # 40 channels, a linear bottleneck: signed values
]
# Ablation-CAM: pytorch-grad-cam zeroes a channel only where the layer's minimum is 0 (after a ReLU).
RELU_CASES = [("resnet18", "layer2", 16), ("lite0", "bn1", 64)]
SIGNED_CASES = [("convnext_tiny", "stages.1", 32), ("lite0", "blocks.4", 64)]


@functools.cache
def noise_batch(size: int, n: int = 1, float64: bool = False) -> torch.Tensor:
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(99))
    return x.double() if float64 else x


def inputs_for(name: str, size: int, n: int = 1) -> torch.Tensor:
    """Real photos for the Lite0 with real weights; seeded noise for the random-init models; in float64."""
    return photo_batch(size, n, True) if name == "lite0" else noise_batch(size, n, True)


@functools.cache
def photo_batch(size: int, n: int = 1, float64: bool = False) -> torch.Tensor:
    """Real photos (the Lite0 here has real weights), squashed to ``size`` and scaled as Lite0 expects."""
    from PIL import Image

    names = ["cat.png", "dogs.png", "samoyed.png"][:n]
    photos = [np.asarray(Image.open(SAMPLES / p).convert("RGB").resize((size, size)), dtype=np.float32) for p in names]
    x = (torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2) / 255.0 - 0.5) / 0.5
    return x.double() if float64 else x


@functools.cache
def model_float64(name: str) -> nn.Module:
    return copy.deepcopy(model(name)).double()


def ours(name, path, size, method, settings=None, batch_size=64, n=1):
    m = model_float64(name)
    return explain_batch(
        m,
        inputs_for(name, size, n),
        {path: m.get_submodule(path)},
        methods=[method],
        settings=settings or {},
        batch_size=batch_size,
    )


class RecordedAblationCAM(AblationCAM):
    """pytorch-grad-cam's Ablation-CAM, keeping the weights it computed (``ablation_bound`` reads them)."""

    def get_cam_weights(self, *args, **kwargs):
        self.recorded_weights = super().get_cam_weights(*args, **kwargs)
        return self.recorded_weights


def pgc(cam_class, name, path, x, classes, hw, **kw) -> tuple[torch.Tensor, float]:
    """pytorch-grad-cam's scaled map on a float64 copy of the model, and the bound of the comparison with ours.

    Score-CAM builds its scores with torch.Tensor(list), a tensor of the default dtype: float64 here, so the
    bound is TOL. Ablation-CAM rounds its scores to float32 whatever the model: ``ablation_bound``.
    """
    m = copy.deepcopy(model_float64(name))  # a copy: Ablation-CAM swaps the layer out while it runs
    with cam_class(model=m, target_layers=[m.get_submodule(path)], **kw) as cam, default_dtype(torch.float64):
        cam.get_target_width_height = lambda _t: (hw[1], hw[0])
        theirs = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in classes])
        acts = cam.activations_and_grads.activations[0]
    if cam_class is RecordedAblationCAM:
        bound = ablation_bound(torch.from_numpy(cam.recorded_weights).double(), acts)
    else:
        bound = TOL
    return scaled(torch.from_numpy(np.asarray(theirs, dtype=np.float64))), bound


def ablation_bound(weights: torch.Tensor, acts: torch.Tensor) -> float:
    """How far pytorch-grad-cam's float32 scores can move its Ablation-CAM map from the float64 one, scaled.

    Its weight w = (y - s) / y takes the float64 scores y and s rounded to float32, a float32 subtraction and
    a division: to first order it is off by U32 (|w| + 1 + |s / y|) + 2 U32 |w| <= U32 (2 + 4 |w|), as
    |s / y| = |1 - w|. The map sum_k w_k A_k (float64) is then off by E = U32 sum_k (2 + 4 |w_k|) |A_k|,
    and its scaled values, rounded to float32 at the end, by U32 more: ``minmax_bound(E + U32 range, range)``.
    """
    error = U32 * torch.einsum("bc,bchw->bhw", 2 + 4 * weights.abs(), acts.abs()).flatten(1).amax(1)
    cam = torch.relu(torch.einsum("bc,bchw->bhw", weights, acts)).flatten(1)
    spans = cam.amax(1) - cam.amin(1)
    return max(minmax_bound((e + U32 * span).item(), span.item()) for e, span in zip(error, spans))


# --------------------------------------------------------------------------- Score-CAM


@pytest.mark.parametrize("name,path,size", SCORE_CASES)
def test_scorecam_matches_pytorch_grad_cam_with_its_convention(name, path, size) -> None:
    res = ours(name, path, size, "scorecam", {"scorecam_convention": "pytorch-grad-cam"})
    mine = scaled(res.maps["scorecam", path][:, 0])
    theirs, bound = pgc(ScoreCAM, name, path, inputs_for(name, size), res.classes[:, 0], mine.shape[-2:])
    assert max_diff(mine, theirs) <= bound


def test_scorecam_matches_torchcam_with_its_convention() -> None:
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    name, path, size = SCORE_CASES[0]
    res = ours(name, path, size, "scorecam", {"scorecam_convention": "torchcam"})  # float64 on both sides: TOL
    with TorchcamScoreCAM(
        copy.deepcopy(model_float64(name)), target_layer=path, batch_size=64, input_shape=(3, size, size)
    ) as cam:
        scores = cam.model(inputs_for(name, size))
        theirs = cam(class_idx=res.classes[:, 0].tolist(), scores=scores, normalized=False)[0].detach()
    assert max_diff(scaled(res.maps["scorecam", path][:, 0]), scaled(theirs)) <= TOL


def test_scorecam_paper_convention_by_a_reference_loop() -> None:
    """The authors' loop, written out: skip constant channels, weight = softmax probability of the class.
    In float64 on both sides: TOL."""
    name, path, size = SCORE_CASES[1]
    m, x = model_float64(name), photo_batch(size, float64=True)
    res = ours(name, path, size, "scorecam")
    c = int(res.classes[0, 0])
    captured = {}
    with installed(forward=[(m.get_submodule(path), lambda _m, _i, o: captured.setdefault("a", o))]), torch.no_grad():
        m(x)
    acts = captured["a"][0]
    kept, masked = [], []
    for k in range(acts.shape[0]):
        up = torch.nn.functional.interpolate(
            acts[None, k : k + 1], size=(size, size), mode="bilinear", align_corners=False
        )[0, 0]
        if up.max() == up.min():
            continue
        kept.append(k)
        masked.append(x[0] * (up - up.min()) / (up.max() - up.min()))
    with torch.no_grad():
        weights = torch.softmax(m(torch.stack(masked)), dim=1)[:, c]
    total = (weights[:, None, None] * acts[kept]).sum(0)
    assert max_diff(scaled(res.maps["scorecam", path][:, 0]), scaled(torch.relu(total)[None])) <= TOL


def test_scorecam_skips_constant_channels_and_batches_its_passes() -> None:
    name, path, size = "resnet18", "layer4", 64
    m, x = model(name), photo_batch(size)
    captured = {}
    with installed(forward=[(m.layer4, lambda _m, _i, o: captured.setdefault("a", o))]), torch.no_grad():
        m(x)
    constant = int((captured["a"][0].flatten(1).amax(1) == captured["a"][0].flatten(1).amin(1)).sum())
    assert constant > 0, "no constant channel: the check would be vacuous"
    sizes = []
    with installed(forward=[(m, lambda _m, inp, _o: sizes.append(inp[0].shape[0]))]):
        explain_batch(m, x, {path: m.layer4}, methods=["scorecam"], batch_size=100)
    assert sizes[0] == 1 and max(sizes[1:]) <= 100
    assert sum(sizes[1:]) == 512 - constant  # one pass per channel that has a location, none for the rest


# --------------------------------------------------------------------------- Ablation-CAM


@pytest.mark.parametrize("name,path,size", RELU_CASES)
def test_ablationcam_matches_pytorch_grad_cam(name, path, size) -> None:
    res = ours(name, path, size, "ablationcam")
    mine = scaled(res.maps["ablationcam", path][:, 0])
    theirs, bound = pgc(RecordedAblationCAM, name, path, inputs_for(name, size), res.classes[:, 0], mine.shape[-2:])
    assert max_diff(mine, theirs) <= bound


def _reference_ablation(m: nn.Module, path: str, x: torch.Tensor, c: int) -> torch.Tensor:
    """The paper by brute force: zero channel k of the layer in a whole forward pass, for every k."""
    layer = m.get_submodule(path)
    captured = {}
    with installed(forward=[(layer, lambda _m, _i, o: captured.setdefault("a", o))]), torch.no_grad():
        y = m(x)[0, c]
    acts = captured["a"]
    channels = acts.shape[1]
    ablated = acts.repeat(channels, 1, 1, 1)
    ablated[torch.arange(channels), torch.arange(channels)] = 0
    with installed(forward=[(layer, lambda _m, _i, _o, ablated=ablated: ablated)]), torch.no_grad():
        scores = m(x.expand(channels, -1, -1, -1))[:, c]
    weights = (y - scores) / y
    return torch.relu((weights[:, None, None] * acts[0]).sum(0))[None]


@pytest.mark.parametrize("name,path,size", SIGNED_CASES)
def test_ablationcam_on_signed_layers_matches_a_reference_loop(name, path, size) -> None:
    """In float64: a one-channel ablation moves the score a little, so the relative drops are small
    differences of logits, and float32 rounding alone moves the map by ~3e-5."""
    m, x = model_float64(name), photo_batch(size, float64=True)
    res = explain_batch(m, x, {path: m.get_submodule(path)}, methods=["ablationcam"], batch_size=64)
    reference = _reference_ablation(m, path, x, int(res.classes[0, 0]))
    assert max_diff(scaled(res.maps["ablationcam", path][:, 0]), scaled(reference)) <= TOL


def test_ablationcam_with_pytorch_grad_cams_ablation_value() -> None:
    """On a signed layer pytorch-grad-cam writes min - 1e7, not zero (one copy per pass, so no cascade)."""
    name, path, size = "lite0", "blocks.1", 64  # 24 channels: pytorch-grad-cam runs one whole pass per channel here
    res = ours(name, path, size, "ablationcam", {"ablation_value": "min-1e7"}, batch_size=1)
    mine = scaled(res.maps["ablationcam", path][:, 0])
    theirs, bound = pgc(
        RecordedAblationCAM,
        name,
        path,
        photo_batch(size, float64=True),
        res.classes[:, 0],
        mine.shape[-2:],
        batch_size=1,
    )
    assert max_diff(mine, theirs) <= bound


@pytest.mark.parametrize("name,path", [("resnet18", "layer4"), ("convnext_tiny", "stages.2"), ("lite0", "blocks.4")])
def test_ablationcam_runs_only_the_network_after_the_layer(name, path) -> None:
    m = model(name)
    state = PassState()
    calls = []
    batch = 16
    with installed(forward=[(m, lambda *_: calls.append(1))]):
        explain_batch(
            m,
            photo_batch(64, n=2),
            {path: m.get_submodule(path)},
            methods=["ablationcam"],
            batch_size=batch,
            state=state,
        )
    assert isinstance(state.tails[path], LayerTail)
    assert len(calls) == 1  # the one forward pass of the whole model; the copies ran through the tail alone


def test_a_tail_that_cannot_be_traced_falls_back_to_whole_forward_passes() -> None:
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            a = torch.relu(self.features(x))
            if a.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                a = a * 2
            return self.fc(a.mean(dim=(2, 3)))

    torch.manual_seed(0)
    m = Branchy().eval().double()  # float64 on both sides: TOL
    state = PassState()
    x = photo_batch(16, n=2, float64=True)
    res = explain_batch(m, x, {"features": m.features}, methods=["ablationcam"], state=state)
    assert isinstance(state.tails["features"], WholeNetworkTail)
    captured = {}
    with installed(forward=[(m.features, lambda _m, _i, o: captured.setdefault("a", o))]), torch.no_grad():
        y = m(x)
    for b in range(2):
        c = int(res.classes[b, 0])
        acts = captured["a"][b : b + 1]
        weights = []
        for k in range(4):
            ablated = acts.clone()
            ablated[:, k] = 0
            with installed(forward=[(m.features, lambda _m, _i, _o, ablated=ablated: ablated)]), torch.no_grad():
                weights.append((y[b, c] - m(x[b : b + 1])[0, c]) / y[b, c])
        ref = torch.relu((torch.stack(weights)[:, None, None] * acts[0]).sum(0))
        assert max_diff(scaled(res.maps["ablationcam", "features"][b, :1]), scaled(ref[None])) <= TOL


def test_ablation_memory_is_bounded_by_the_batch() -> None:
    m = model("resnet18")
    sizes = []
    with installed(forward=[(m.fc, lambda _m, inp, _o: sizes.append(inp[0].shape[0]))]):
        explain_batch(m, photo_batch(64), {"layer4": m.layer4}, methods=["ablationcam"], batch_size=50)
    assert sizes[0] == 1 and max(sizes) == 50 and sum(sizes[1:]) >= 512


# --------------------------------------------------------------------------- occlusion


OCCLUSION_BATCH = 128  # more than any case's windows: ours runs each image's occluded copies in one batch


# Windows that tile the input evenly (64 = 32 + 2 x 16), that leave an edge (100 = 32 + 4.25 x 16), and that
# overlap unevenly (64 = 20 + 6.3 x 7).
@pytest.mark.parametrize(
    "name,size,window,stride,n", [("resnet18", 64, 32, 16, 2), ("lite0", 100, 32, 16, 1), ("lite0", 64, 20, 7, 1)]
)
def test_occlusion_matches_captum(name, size, window, stride, n) -> None:
    """Ours runs in float32 whatever the model; captum's in float64: within ours' float32 error, measured on
    its very passes (``occlusion_bound``)."""
    m, x = model(name), photo_batch(size, n=n)
    res = explain_batch(
        m,
        x,
        {},
        methods=["occlusion"],
        batch_size=OCCLUSION_BATCH,
        settings={"occlusion_window": window, "occlusion_stride": stride},
    )
    mine = res.maps["occlusion", "input"][:, 0]
    assert mine.shape[-2:] == (size, size)
    x64 = x.double()
    baselines = x64.mean(dim=(2, 3), keepdim=True).expand_as(x64).contiguous()
    theirs = Occlusion(model_float64(name)).attribute(
        x64,
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=baselines,
        target=res.classes[:, 0],
    )
    theirs = torch.relu(theirs[:, 0]).detach()
    bound = occlusion_bound(name, x, res.classes[:, 0], window, stride, theirs)
    assert max_diff(scaled(mine), scaled(theirs)) <= bound


def occlusion_bound(
    name: str, x: torch.Tensor, classes: torch.Tensor, window: int, stride: int, exact: torch.Tensor
) -> float:
    """How far float32 can move our occlusion maps from the float64 ones (``exact``), once scaled.

    Our map at a pixel is the mean, over the windows covering it, of the class score's drop y - s_n. The
    network's float32 error on our passes is measured: the occluded inputs built as ours builds them (float32,
    an image's windows in one batch, as ``OCCLUSION_BATCH`` makes ours run them) through the float32 model,
    against the exact ones through the float64 model, and y likewise (ours: one pass over the whole batch). Each
    drop is then off by at most |dy| + max |ds|, and the float32 mean over the windows adds gamma_{n+1} of the
    largest drop. ``minmax_bound`` turns that into a bound on the scaled values; our scaling adds 3 roundings.
    """
    m32, m64 = model(name), model_float64(name)
    masks = window_masks(tuple(x.shape[-2:]), window, stride, x.device)[:, None]  # (n, 1, H, W)
    bounds = []
    with torch.no_grad():
        dy = (m32(x) - m64(x.double())).gather(1, classes[:, None])[:, 0].abs()
        for image, c, y_error, target in zip(x, classes.tolist(), dy, exact):
            s32 = m32(image * (1 - masks) + image.mean(dim=(1, 2), keepdim=True) * masks)[:, c]
            image, masks64 = image.double(), masks.double()
            s64 = m64(image * (1 - masks64) + image.mean(dim=(1, 2), keepdim=True) * masks64)[:, c]
            drops = m64(image[None])[0, c] - s64
            error = y_error + (s32 - s64).abs().max() + gamma32(masks.shape[0] + 1) * drops.abs().max()
            bounds.append(minmax_bound(error.item(), (target.max() - target.min()).item()))
    return max(bounds) + 3 * U32


# --------------------------------------------------------------------------- what runs, and how


def _no_gradients(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("a gradient-free method computed a gradient")

    monkeypatch.setattr(torch.autograd, "grad", refuse)
    monkeypatch.setattr(torch.Tensor, "backward", refuse)


@pytest.mark.parametrize("method", ["eigencam", "scorecam", "ablationcam", "occlusion", "cam"])
def test_gradient_free_methods_run_in_inference_mode_and_never_backward(method, monkeypatch) -> None:
    m = model("resnet18")
    modes = []
    _no_gradients(monkeypatch)
    with installed(forward=[(m.layer1, lambda *_: modes.append(torch.is_inference_mode_enabled()))]):
        res = explain_batch(
            m,
            photo_batch(64),
            {"layer4": m.layer4},
            methods=[method],
            batch_size=128,
            settings={"occlusion_window": 32, "occlusion_stride": 16},
        )
    assert modes and all(modes), "a forward pass ran outside inference mode"
    assert not normalize_minmax(next(iter(res.maps.values())))[1].any()


def test_gradient_methods_share_one_forward_and_one_backward_per_class(monkeypatch) -> None:
    m = model("resnet18")
    forwards, grads = [], []
    real_grad = torch.autograd.grad

    def counting_grad(*a, **k):
        grads.append(1)
        return real_grad(*a, **k)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    methods = ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "eigengradcam", "eigencam"]
    with installed(forward=[(m, lambda *_: forwards.append(1))]):
        res = explain_batch(m, photo_batch(64, n=2), {"layer4": m.layer4, "layer3": m.layer3}, methods=methods, top_k=3)
    assert len(forwards) == 1 and len(grads) == 3  # one forward; one backward per class, for every method
    assert len(res.maps) == len(methods) * 2


def test_gradcam_and_scorecam_in_one_call_share_the_forward_pass() -> None:
    m = model("resnet18")
    sizes = []
    with installed(forward=[(m, lambda _m, inp, _o: sizes.append(inp[0].shape[0]))]):
        both = explain_batch(m, photo_batch(64), {"layer3": m.layer3}, methods=["gradcam", "scorecam"], batch_size=256)
    assert sizes[0] == 1 and len(sizes) == 2  # the shared forward, then one batch of masked copies
    alone = explain_batch(m, photo_batch(64), {"layer3": m.layer3}, methods=["scorecam"], batch_size=256)
    assert torch.equal(both.maps["scorecam", "layer3"], alone.maps["scorecam", "layer3"])
