"""Vision transformers and other token-grid models: layouts, default layers, every method, known answers.

Oracle: pytorch-grad-cam, given the right ``reshape_transform`` written by hand here for
each model (tokens without their prefix, or channels-last permuted), compared at the
layer's own grid after min-max scaling. Every model is random-init at a small, mostly
non-square input, so the grids are small and the tests fast. The oracle comparisons run
in float64 on both sides: the methods divide by activation sums (XGrad-CAM) and sum
signed products over hundreds of channels, which on LayerNorm outputs cancel enough
for float32 rounding alone to reach 1e-5; float64 compares the algorithms, not the rounding.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("pytorch_grad_cam")

from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from gradcam_cli import explain  # noqa: E402
from gradcam_cli.cli import app  # noqa: E402
from gradcam_cli.errors import MethodError, UsageError  # noqa: E402
from gradcam_cli.explainer import Explainer  # noqa: E402
from gradcam_cli.maps.preprocess import CropGeometry, PreprocessConfig  # noqa: E402
from gradcam_cli.maps.scale import normalize_minmax  # noqa: E402
from gradcam_cli.methods import METHODS  # noqa: E402
from gradcam_cli.methods.base import first_component  # noqa: E402
from gradcam_cli.model.fusion import fold_batchnorm  # noqa: E402
from gradcam_cli.model.layers import default_layer, layer_layouts, resolve_layer, trace_layers  # noqa: E402
from gradcam_cli.model.layout import ChannelsFirst, ChannelsLast, ModelHints, Tokens, detect_layout  # noqa: E402
from gradcam_cli.model.loading import LoadedModel  # noqa: E402
from gradcam_cli.model.outputs import logits_of  # noqa: E402
from gradcam_cli.options import ExplainOptions  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

from helpers import U32, default_dtype, gamma32, max_diff, minmax_bound, runner  # noqa: E402

# Max abs difference between min-max scaled maps, for comparisons computed in float64 on both sides: float64
# rounding (~1e-16 per operation) is far below it, and so is the one float32 rounding that pytorch-grad-cam
# applies to its scaled maps (2**-24 of values in [0, 1]). A wrong prefix, grid or weighting moves maps by 1e-1.
TOL = 1e-5
GRADIENT_METHODS = {  # ours -> pytorch-grad-cam's, with its epsilons passed to ours
    "gradcam": GradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "gradcampp": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
}
PGC_SETTINGS = {"gradcampp_eps": 1e-6, "xgradcam_eps": 1e-7, "scorecam_convention": "pytorch-grad-cam"}


def tokens_to_grid(prefix: int, h: int, w: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """pytorch-grad-cam's ViT reshape_transform, for ``prefix`` leading tokens and an h x w grid."""

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    return reshape


def channels_last_to_grid(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's Swin reshape_transform: (B, H, W, C) -> (B, C, H, W)."""
    return t.permute(0, 3, 1, 2)


def tv_vit_b_16(**kw) -> nn.Module:
    model = torchvision.models.vit_b_16(weights=None, **kw)
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts the head at zero: no gradient at all
    return model


@dataclass(frozen=True)
class Spec:
    build: Callable[[], nn.Module]
    size: tuple[int, int]  # the input (H, W) the test feeds
    default: str  # the default layer the issue prescribes
    layout: object  # what must be detected there
    reshape: Callable[[torch.Tensor], torch.Tensor]  # the hand-written oracle reshape
    # Grad-CAM and at least two others per model, every gradient method on some model. Not HiResCAM
    # on Swin: its last stage feeds a LayerNorm, whose input gradient is orthogonal to its centred
    # input up to the norm's eps: gradient x activation cancels there to ~1e-6 of its terms, a map
    # of the eps that float32 rounding (ours or pytorch-grad-cam's) redraws at will.
    methods: tuple[str, ...]


SPECS = {
    "vit_small_patch16": Spec(
        lambda: timm.create_model("vit_small_patch16_224", pretrained=False, img_size=(48, 80)),
        (48, 80),
        "blocks.11.norm1",
        Tokens((3, 5), 1),
        tokens_to_grid(1, 3, 5),
        tuple(GRADIENT_METHODS),
    ),
    "deit_small_distilled": Spec(
        lambda: timm.create_model("deit_small_distilled_patch16_224", pretrained=False, img_size=(64, 48)),
        (64, 48),
        "blocks.11.norm1",
        Tokens((4, 3), 2),
        tokens_to_grid(2, 4, 3),
        ("gradcam", "gradcampp", "hirescam"),
    ),
    # Register tokens, dynamic image size: built for 70x98, fed 56x84 (a grid the model was not built for).
    "vit_small_reg4_dinov2": Spec(
        lambda: timm.create_model(
            "vit_small_patch14_reg4_dinov2", pretrained=False, img_size=(70, 98), dynamic_img_size=True, num_classes=10
        ),
        (56, 84),
        "blocks.11.norm1",
        Tokens((4, 6), 5),
        tokens_to_grid(5, 4, 6),
        ("gradcam", "xgradcam", "layercam"),
    ),
    "swin_tiny": Spec(
        lambda: timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=(64, 96)),
        (64, 96),
        "layers.3",
        ChannelsLast((2, 3)),
        channels_last_to_grid,
        ("gradcam", "gradcampp", "layercam"),
    ),
    "eva02_tiny": Spec(
        lambda: timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=(56, 84), num_classes=10),
        (56, 84),
        "blocks.11.norm1",
        Tokens((4, 6), 1),
        tokens_to_grid(1, 4, 6),
        ("gradcam", "hirescam", "xgradcam"),
    ),
    "tv_vit_b_16": Spec(
        lambda: tv_vit_b_16(image_size=64),
        (64, 64),
        "encoder.layers.encoder_layer_11.ln_1",
        Tokens((4, 4), 1),
        tokens_to_grid(1, 4, 4),
        ("gradcam", "layercam", "gradcampp"),
    ),
    "tv_swin_t": Spec(
        lambda: torchvision.models.swin_t(weights=None),
        (64, 96),
        "features.7",
        ChannelsLast((2, 3)),
        channels_last_to_grid,
        ("gradcam", "xgradcam", "layercam"),
    ),
}


@functools.cache
def model_of(name: str) -> nn.Module:
    torch.manual_seed(0)
    return SPECS[name].build().eval().double()


def inputs_of(size: tuple[int, int], n: int = 2, seed: int = 1234, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed)).to(dtype)


def ours(model: nn.Module, path: str, x: torch.Tensor, methods, **kw):
    """Our maps with the layout detected as the explainer detects it."""
    layers = {path: model.get_submodule(path)}
    layouts = layer_layouts(model, layers, tuple(x.shape[-2:]))
    return explain_batch(model, x, layers, methods=methods, layouts=layouts, settings=PGC_SETTINGS, **kw), layouts


def theirs(
    cam_class, model: nn.Module, path: str, x: torch.Tensor, classes: torch.Tensor, reshape, grid: tuple[int, int], **kw
) -> torch.Tensor:
    """pytorch-grad-cam's maps at the layer's own grid (no resize), min-max scaled.

    Its maps come back as float32 (the last step of its scaling); they are scaled again here in float64, so
    that no float32 arithmetic of ours is added to a float64 comparison.
    """
    # Score-CAM's class scores become a torch.Tensor(list) there, a tensor of the default dtype: float64 here.
    with (
        cam_class(model=model, target_layers=[model.get_submodule(path)], reshape_transform=reshape, **kw) as cam,
        default_dtype(x.dtype),
    ):
        cam.get_target_width_height = lambda _t: (grid[1], grid[0])
        out = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return normalize_minmax(torch.from_numpy(np.asarray(out, dtype=np.float64)))[0]


def scaled_nonempty(maps: torch.Tensor, what: str) -> torch.Tensor:
    """Min-max scaled in the maps' own dtype (float64 maps stay float64)."""
    scaled, empty = normalize_minmax(maps)
    assert not empty.any(), f"{what}: an empty map would make the comparison vacuous"
    return scaled


# --------------------------------------------------------------------------- 1. oracle: pytorch-grad-cam


@pytest.mark.parametrize("name", list(SPECS))
def test_default_layer_layout_and_maps_match_pytorch_grad_cam(name: str) -> None:
    spec = SPECS[name]
    model = model_of(name)
    infos = trace_layers(model, spec.size)
    assert default_layer(model, infos) == spec.default
    x = inputs_of(spec.size, dtype=torch.float64)
    result, layouts = ours(model, spec.default, x, list(spec.methods))
    assert layouts[spec.default] == spec.layout
    classes = result.classes[:, 0]
    for method in spec.methods:
        cam_class = GRADIENT_METHODS[method]
        mine = scaled_nonempty(result.maps[method, spec.default][:, 0], f"{name} {method}")
        assert mine.shape[-2:] == spec.layout.grid
        other = theirs(cam_class, model, spec.default, x, classes, spec.reshape, spec.layout.grid)
        assert max_diff(mine, other) <= TOL, (name, method)


def tiny_vit(**kw) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    args = dict(img_size=(32, 48), patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    return VisionTransformer(**{**args, **kw}).eval()


def tiny_swin() -> nn.Module:
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    return SwinTransformer(
        img_size=(64, 96), patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2), num_classes=5
    ).eval()


@pytest.mark.parametrize("which", ["vit_reg_tokens", "swin"])
def test_scorecam_on_token_grids_matches_pytorch_grad_cam(which: str) -> None:
    if which == "swin":
        model, path, reshape, size = tiny_swin().double(), "layers.1", channels_last_to_grid, (64, 96)
    else:
        model, path, size = tiny_vit(reg_tokens=2).double(), "blocks.1.norm1", (32, 48)
        reshape = tokens_to_grid(3, 4, 6)
    x = inputs_of(size, dtype=torch.float64)
    result, layouts = ours(model, path, x, ["scorecam"])
    grid = layouts[path].grid
    mine = scaled_nonempty(result.maps["scorecam", path][:, 0], which)
    other = theirs(ScoreCAM, model, path, x, result.classes[:, 0], reshape, grid)
    assert max_diff(mine, other) <= TOL


# --------------------------------------------------------------------------- 2. every method on token layers


def ablation_reference(model: nn.Module, path: str, x: torch.Tensor, cls: int, prefix: int, grid) -> torch.Tensor:
    """Ablation-CAM by brute force: zero channel k of the grid tokens (prefix tokens kept), rerun the model."""
    module = model.get_submodule(path)
    with torch.no_grad():
        captured = {}
        handle = module.register_forward_hook(lambda _m, _i, o: captured.setdefault("a", o.clone()))
        score = model(x)[0, cls].item()
        handle.remove()
        acts = captured["a"]  # (1, P + hw, C)
        drops = []
        for k in range(acts.shape[-1]):
            ablated = acts.clone()
            ablated[:, prefix:, k] = 0
            handle = module.register_forward_hook(lambda _m, _i, _o, ablated=ablated: ablated)
            drops.append((score - model(x)[0, cls].item()) / score)
            handle.remove()
    grid_acts = acts[0, prefix:].reshape(*grid, -1).permute(2, 0, 1)
    return torch.relu(torch.einsum("k,khw->hw", torch.tensor(drops, dtype=acts.dtype), grid_acts))


def test_ablationcam_on_tokens_keeps_the_prefix_tokens_and_matches_brute_force() -> None:
    """In float64 on both sides: the relative drops are small differences of logits, which float32 rounding
    alone moves by 1e-5 of the map on some CPUs."""
    model = tiny_vit(reg_tokens=2).double()  # 1 class token + 2 register tokens
    x = inputs_of((32, 48), n=1, dtype=torch.float64)
    result, layouts = ours(model, "blocks.1.norm1", x, ["ablationcam"])
    assert layouts["blocks.1.norm1"] == Tokens((4, 6), 3)
    cls = int(result.classes[0, 0])
    reference = ablation_reference(model, "blocks.1.norm1", x, cls, 3, (4, 6))
    mine = scaled_nonempty(result.maps["ablationcam", "blocks.1.norm1"][0, 0], "ablationcam")
    assert max_diff(mine, normalize_minmax(reference)[0]) <= TOL


def test_eigencam_reads_the_hand_reshaped_grid() -> None:
    model = tiny_vit(class_token=True).double()  # float64: the bound below is float64's with a wide margin
    x = inputs_of((32, 48), dtype=torch.float64)
    result, _ = ours(model, "blocks.0", x, ["eigencam"])
    captured = {}
    handle = model.blocks[0].register_forward_hook(lambda _m, _i, o: captured.setdefault("a", o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    by_hand = tokens_to_grid(1, 4, 6)(captured["a"])
    expected = torch.relu(first_component(by_hand))
    assert max_diff(result.maps["eigencam", "blocks.0"][:, 0], expected) <= 1e-5 * expected.abs().max().item()


LAYER_METHODS = [m for m in METHODS if m != "cam" and METHODS[m].uses_layer]


@pytest.mark.parametrize("which", ["tokens+prefix", "channels_last"])
def test_every_method_runs_on_token_layers(which: str) -> None:
    if which == "channels_last":
        model, path, size, grid = tiny_swin(), "layers.1", (64, 96), (8, 12)
    else:
        model, path, size, grid = tiny_vit(reg_tokens=1), "blocks.1.norm1", (32, 48), (4, 6)
    x = inputs_of(size)
    result, _ = ours(model, path, x, [*LAYER_METHODS, "occlusion"], top_k=2, batch_size=64)
    for method in LAYER_METHODS:
        maps = result.maps[method, path]
        assert maps.shape == (2, 2, *grid), method
        assert torch.isfinite(maps).all() and maps.amax() > 0, method
    assert result.maps["occlusion", "input"].shape == (2, 2, *size)


# --------------------------------------------------------------------------- 3. known answer: one patch read


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, declare: tuple[int, int] | None) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)
        if declare is not None:  # what timm's patch embedding says about itself
            self.patch_size, self.grid_size = (patch, patch), declare

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mix = nn.Linear(dim, dim)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(dim))
            self.mix.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.norm1(x))


class OnePatchNet(nn.Module):
    """A token model whose class-0 logit is channel 0 of the token at patch ``target``, and
    nothing else: only that patch can carry evidence for class 0.

    Channel 0 of every patch embedding is zero; a position embedding marks the target
    patch with 50 there. Prefix tokens are marked more strongly (100): a map that kept a
    prefix token, or read the grid shifted by the prefix, would peak somewhere else.
    ``metadata="channels_last"``: the blocks run on a ``(B, h, w, C)`` grid instead (Swin's layout).
    """

    def __init__(
        self,
        grid: tuple[int, int],
        target: tuple[int, int],
        prefix: int = 0,
        metadata: str = "timm",
        patch: int = 8,
        dim: int = 16,
    ) -> None:
        super().__init__()
        self.grid, self.prefix, self.channels_last = grid, prefix, metadata == "channels_last"
        self.index = target[0] * grid[1] + target[1]
        self.patch_embed = PatchEmbed(patch, dim, grid if metadata == "timm" else None)
        if metadata == "timm":
            self.num_prefix_tokens = prefix
        torch.manual_seed(0)
        with torch.no_grad():
            self.patch_embed.proj.weight.mul_(0.5)
            self.patch_embed.proj.weight[0] = 0
            self.patch_embed.proj.bias[0] = 0
        pos = torch.zeros(1, grid[0] * grid[1], dim)
        pos[0, self.index, 0] = 50.0
        self.pos_embed = nn.Parameter(pos)
        marker = torch.zeros(1, prefix, dim)
        marker[..., 0] = 100.0
        if metadata == "parameters":  # what a model without timm's fields still shows: its token parameters
            self.cls_token = nn.Parameter(marker[:, :1].clone())
            self.reg_token = nn.Parameter(marker[:, 1:].clone())
        else:
            self.extra = nn.Parameter(marker)
        self.blocks = nn.Sequential(Block(dim), Block(dim))
        self.head = nn.Linear(dim, 3)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[0, 0] = 1.0
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x) + self.pos_embed
        prefix = torch.cat([self.cls_token, self.reg_token], 1) if hasattr(self, "cls_token") else self.extra
        tokens = torch.cat([prefix.expand(x.shape[0], -1, -1), tokens], dim=1)
        if self.channels_last:
            out = self.blocks(tokens[:, self.prefix :].reshape(x.shape[0], *self.grid, -1))
            return self.head(out[:, self.index // self.grid[1], self.index % self.grid[1]])
        return self.head(self.blocks(tokens)[:, self.prefix + self.index])


KNOWN_METHODS = ["gradcam", "hirescam", "layercam", "gradcampp", "xgradcam", "ablationcam"]


@pytest.mark.parametrize(
    "grid,target,prefix,metadata,photo_hw",
    [
        ((4, 4), (1, 2), 0, "timm", (90, 120)),  # square grid
        ((4, 6), (3, 1), 0, "none", (100, 200)),  # non-square, layout from shapes alone
        ((3, 5), (0, 4), 1, "timm", (150, 200)),  # a class token (timm's num_prefix_tokens)
        ((4, 6), (2, 5), 5, "timm", (100, 160)),  # class + 4 register tokens
        ((5, 3), (4, 0), 2, "parameters", (200, 130)),  # class + register token parameters, taller than wide
        ((4, 4), (0, 3), 0, "channels_last", (120, 90)),  # a (B, h, w, C) stage, square
        ((3, 6), (2, 1), 0, "channels_last", (100, 220)),  # a (B, h, w, C) stage, non-square
    ],
)
def test_map_peaks_at_the_patch_the_head_reads(grid, target, prefix, metadata, photo_hw) -> None:
    model = OnePatchNet(grid, target, prefix, metadata).eval()
    input_hw = (grid[0] * 8, grid[1] * 8)
    config = PreprocessConfig(input_size=input_hw, resize=min(input_hw))
    photo = np.random.default_rng(3).integers(0, 256, size=(*photo_hw, 3), dtype=np.uint8)
    [result] = explain(model, [photo], methods=KNOWN_METHODS, classes=[0], preprocess=config)
    # Where the patch lies on the photo: shorter side resized to the crop's shorter side, centre crop.
    scale = min(input_hw) / min(photo_hw)
    resized = (
        int(photo_hw[0] * scale) if photo_hw[0] > photo_hw[1] else min(input_hw),
        int(photo_hw[1] * scale) if photo_hw[1] > photo_hw[0] else min(input_hw),
    )
    top, left = round((resized[0] - input_hw[0]) / 2), round((resized[1] - input_hw[1]) / 2)
    y0, x0 = (top + 8 * target[0]) / scale, (left + 8 * target[1]) / scale
    y1, x1 = y0 + 8 / scale, x0 + 8 / scale
    # The default layer: the last block's norm1 for token sequences, the last stage for channels-last grids.
    layer, layout = ("blocks.1", "channels_last") if metadata == "channels_last" else ("blocks.1.norm1", "tokens")
    for e in result.explanations:
        assert e.layer == layer and e.grid == grid, (e.layer, e.grid)
        assert (e.layout, e.prefix_tokens) == (layout, prefix)
        assert e.map.shape == photo_hw and not e.empty
        peak_y, peak_x = np.unravel_index(np.argmax(e.map), e.map.shape)  # the first pixel at the maximum
        assert y0 <= peak_y + 0.5 < y1 and x0 <= peak_x + 0.5 < x1, (e.method, (peak_y, peak_x), (y0, x0, y1, x1))
        bx0, by0, bx1, by1 = e.bbox  # around the patch, give or take half a patch of interpolation
        m = 4 / scale
        assert x0 - m <= bx0 < bx1 <= x1 + m and y0 - m <= by0 < by1 <= y1 + m, (e.method, e.bbox)
    records = {r["method"]: r for r in result.records}
    assert records["gradcam"]["grid"] == list(grid) and records["gradcam"]["prefix_tokens"] == prefix


def test_guided_image_on_a_token_map_lies_inside_the_patch() -> None:
    model = OnePatchNet((4, 6), (1, 4), 1).eval()
    config = PreprocessConfig(input_size=(32, 48), resize=(32, 48))
    photo = np.random.default_rng(4).integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    [result] = explain(model, [photo], classes=[0], guided=True, preprocess=config)
    [e] = result.explanations
    assert e.guided.shape == (64, 96, 3)
    bright = np.abs(e.guided.astype(int) - 128).sum(-1)  # guided images are grey where there is nothing
    ys, xs = np.nonzero(bright > 0.2 * bright.max())
    assert ys.min() >= 8 and ys.max() < 40 and xs.min() >= 48 and xs.max() < 96


# --------------------------------------------------------------------------- 4. layouts: detection and refusals


def test_detection_reads_each_layout_from_shapes() -> None:
    none = ModelHints()
    assert detect_layout((2, 768, 7, 7), 2, (224, 224), none) == ChannelsFirst((7, 7))
    assert detect_layout((2, 7, 7, 768), 2, (224, 224), none) == ChannelsLast((7, 7))
    assert detect_layout((2, 197, 384), 2, (224, 224), none) == Tokens((14, 14), 1)
    assert detect_layout((2, 577, 768), 2, (384, 384), none) == Tokens((24, 24), 1)  # vit_base_patch16_384
    assert detect_layout((50, 2, 64), 2, (224, 224), none) == Tokens((7, 7), 1, sequence_first=True)
    # Non-square: (4, 6), not (6, 4); 24 tokens alone could also be 4x5 + 4 prefix, which the model settles.
    assert detect_layout((2, 24, 32), 2, (64, 96), ModelHints(prefix=0)) == Tokens((4, 6), 0)
    assert detect_layout((2, 24, 32), 2, (64, 96), ModelHints(seen_grids=frozenset({(4, 6)}))) == Tokens((4, 6), 0)
    assert detect_layout((2, 1000), 2, (224, 224), none) is None
    assert detect_layout((16, 49, 96), 2, (224, 224), none) is None  # Swin's per-window tensors


def test_the_models_metadata_settles_what_shapes_cannot() -> None:
    # 17 tokens at 224: a 4x4 grid + 1 prefix token, or 3x3 + 8? Refused without metadata, read with it.
    ambiguous = detect_layout((2, 17, 32), 2, (224, 224), ModelHints())
    assert isinstance(ambiguous, str) and "4x4 tokens + 1 prefix" in ambiguous and "3x3 tokens + 8 prefix" in ambiguous
    assert detect_layout((2, 17, 32), 2, (224, 224), ModelHints(grid=(4, 4), prefix=1)) == Tokens((4, 4), 1)
    # (B, 7, 7, 7): channels first or last? Refused unless the module's type says where its channels are.
    cube = (2, 7, 7, 7)
    assert isinstance(detect_layout(cube, 2, (224, 224), ModelHints()), str)
    assert detect_layout(cube, 2, (224, 224), ModelHints(), nn.Conv2d(3, 7, 1)) == ChannelsFirst((7, 7))
    assert detect_layout(cube, 2, (224, 224), ModelHints(), nn.LayerNorm(7)) == ChannelsLast((7, 7))
    assert detect_layout(cube, 2, (224, 224), ModelHints(channels_last=True)) == ChannelsLast((7, 7))


class Cube(nn.Module):
    """Its only grid is (B, 7, 7, 7): nothing tells channels from positions."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 7, 32, 32), nn.Tanh())
        self.head = nn.Linear(7 * 49, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


def test_ambiguous_layout_is_refused_in_one_line_naming_the_shapes() -> None:
    model = Cube().eval()
    infos = trace_layers(model, (224, 224))
    with pytest.raises(UsageError) as err:
        resolve_layer(model, "body", infos)
    message = str(err.value)
    assert "(2, 7, 7, 7)" in message and "channels-first" in message and "channels-last" in message
    assert "--layer" in message and "\n" not in message
    with pytest.raises(UsageError, match="no default layer: body: .*channels-first"):
        default_layer(model, infos)
    assert resolve_layer(model, "body.0", infos) is model.body[0]  # the convolution says where its channels are


class UnfoldTokens(nn.Module):
    """24 tokens from unfolded 8x8 patches at 32x48 and nothing else to tell their grid:
    a 4x6 grid, or 4x5 behind 4 prefix tokens (a stride-10 grid)?"""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(192, 16)
        self.blocks = nn.Sequential(Block(16), Block(16))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(nn.functional.unfold(x, 8, stride=8).transpose(1, 2))
        return self.head(self.blocks(tokens).mean(1))


def test_no_silent_default_when_the_token_grid_is_ambiguous() -> None:
    model = UnfoldTokens().eval()
    loaded = LoadedModel(model, "custom/unfold", PreprocessConfig((32, 48), (32, 48)), 3, None, "random")
    with pytest.raises(UsageError) as err:
        Explainer(loaded, ExplainOptions(outputs=()))
    message = str(err.value)
    assert "4x6 tokens" in message and "4x5 tokens + 4 prefix" in message and "--layer" in message
    assert "(2, 24, 16)" in message and "\n" not in message


def test_token_layout_round_trip_keeps_prefix_tokens() -> None:
    layout = Tokens((2, 3), 2)
    raw = torch.randn(4, 8, 5)
    grid = layout.to_grid(raw)
    assert grid.shape == (4, 5, 2, 3) and torch.equal(grid[1, :, 1, 2], raw[1, 2 + 5])
    back = layout.from_grid(grid[1:2].expand(3, -1, -1, -1), raw[1:2])
    assert torch.equal(back, raw[1:2].expand(3, -1, -1))
    first = Tokens((2, 3), 2, sequence_first=True)
    assert torch.equal(
        first.from_grid(first.to_grid(raw.transpose(0, 1))[:1], raw.transpose(0, 1)[:, :1]), raw[:1].transpose(0, 1)
    )
    with pytest.raises(MethodError, match="input size changed"):
        layout.to_grid(torch.randn(4, 9, 5))


class SequenceFirst(nn.Module):
    """A transformer on ``(S, B, C)`` sequences (``nn.TransformerEncoder``'s default) with a class token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, 16, 8, 8)
        self.class_token = nn.Parameter(torch.randn(1, 1, 16))
        self.encoder = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=False)
        self.last = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=False)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).permute(2, 0, 1)  # (hw, B, C)
        t = torch.cat([self.class_token.expand(1, x.shape[0], -1), t])
        return self.head(self.last(self.encoder(t)).mean(0))


def test_sequence_first_tokens_match_the_hand_reshaped_grid() -> None:
    model = SequenceFirst().eval().double()  # float64 on both sides, as in the oracle tests above (TOL)
    x = inputs_of((32, 48), dtype=torch.float64)
    result, layouts = ours(model, "encoder", x, ["gradcam", "hirescam", "ablationcam"])
    assert layouts["encoder"] == Tokens((4, 6), 1, sequence_first=True)
    classes = result.classes[:, 0]
    for method, cam_class in (("gradcam", GradCAM), ("hirescam", HiResCAM)):
        other = theirs(
            cam_class, model, "encoder", x, classes, lambda t: tokens_to_grid(1, 4, 6)(t.transpose(0, 1)), (4, 6)
        )
        assert max_diff(scaled_nonempty(result.maps[method, "encoder"][:, 0], method), other) <= TOL
    ablation = result.maps["ablationcam", "encoder"]
    assert ablation.shape == (2, 1, 4, 6) and torch.isfinite(ablation).all() and ablation.amax() > 0


def test_grid_follows_the_input_size_of_a_dynamic_model() -> None:
    model = tiny_vit(dynamic_img_size=True)
    loaded = LoadedModel(model, "custom/tiny", PreprocessConfig((32, 48), (32, 48)), 5, None, "random")
    explainer = Explainer(loaded, ExplainOptions(outputs=()))
    assert explainer.layouts == {"blocks.1.norm1": Tokens((4, 6), 1)}
    x = inputs_of((56, 40), n=1)
    [[e]] = explainer.explain_prepared([x[0]], [CropGeometry((40, 56), (40, 56), (0, 0, 40, 56))])
    assert e.grid == (7, 5)
    assert explainer.layouts_for((56, 40)) == {"blocks.1.norm1": Tokens((7, 5), 1)}


# --------------------------------------------------------------------------- 5. CAM on token heads


def test_cam_refuses_a_class_token_head_with_the_reason() -> None:
    model = tiny_vit()
    loaded = LoadedModel(model, "custom/tiny", PreprocessConfig((32, 48), (32, 48)), 5, None, "random")
    with pytest.raises(MethodError, match="reads the class token"):
        Explainer(loaded, ExplainOptions(methods=("cam",), outputs=()))


def test_cam_on_a_gap_linear_head_over_a_token_grid_equals_gradcam() -> None:
    model = tiny_vit(class_token=False, global_pool="avg", fc_norm=False).double()  # head = fc(mean(norm(tokens)))
    x = inputs_of((32, 48), dtype=torch.float64)  # float64: TOL is float64's with a wide margin
    result, _ = ours(model, "norm", x, ["cam", "gradcam"])
    cam = scaled_nonempty(result.maps["cam", "norm"], "cam")
    assert max_diff(cam, normalize_minmax(result.maps["gradcam", "norm"])[0]) <= TOL


# --------------------------------------------------------------------------- 6. models that return more than a tensor


@dataclass
class ModelOutput:
    """What a Hugging Face-style image classifier returns."""

    logits: torch.Tensor
    hidden_states: tuple | None = None


class ReturnsDataclass(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, pixel_values: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=self.inner(pixel_values), hidden_states=(pixel_values,))


def test_dataclass_outputs_work_in_every_forward_pass() -> None:
    plain = tiny_vit(reg_tokens=1)
    wrapped = ReturnsDataclass(plain).eval()
    x = inputs_of((32, 48))
    methods = ["gradcam", "scorecam", "ablationcam", "occlusion"]
    # The trace (default layer, layouts), the engine's passes and Ablation-CAM's tail all read .logits.
    assert default_layer(wrapped, trace_layers(wrapped, (32, 48))) == "inner.blocks.1.norm1"
    for mine, ref in zip(explain(wrapped, list(x), methods=methods), explain(plain, list(x), methods=methods)):
        assert len(mine.maps) == len(ref.maps) == len(methods)
        for (method, layer), value in ref.maps.items():
            # float32: the wrapper adds no arithmetic, so both sides run the same operations on the same values
            # and shapes, and float32 gives the same bits.
            assert np.array_equal(mine.maps[method, layer.replace("blocks", "inner.blocks")], value), method


def test_dataclass_outputs_in_batchnorm_folding_and_cam() -> None:
    with default_dtype(torch.float64):  # the model, and the fold's own probe, in float64
        conv = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
        )
        torch.manual_seed(0)
        with torch.no_grad():
            conv[1].running_mean.normal_()
            conv[1].running_var.uniform_(0.5, 2)
        model = ReturnsDataclass(conv).eval()
        x = inputs_of((16, 16), dtype=torch.float64)
        before = model(x).logits
        folded = fold_batchnorm(model, (16, 16))
    assert [p.bn_path for p in folded] == ["inner.1"]
    assert torch.allclose(model(x).logits, before, atol=1e-5)  # float64: the fold moves them by ~1e-16 of their size
    model, x = model.float(), x.float()  # what explain takes
    [result] = explain(model, list(x[:1]), methods=["cam", "gradcam"], layers=["inner.2"])
    assert np.allclose(
        result.maps["cam", "inner.2"],
        result.maps["gradcam", "inner.2"],
        rtol=0,
        atol=_cam_vs_gradcam_bound(conv, x[:1], result.explanations[0].class_index),
    )


def _cam_vs_gradcam_bound(conv: nn.Sequential, x: torch.Tensor, cls: int) -> float:
    """float32, bounded by its rounding: both maps weigh the same activations A. CAM's weights are the head's
    row w; Grad-CAM's are the mean of 16 x 16 copies of w / 256 (the pool's gradient, exact: a power of two),
    off from w by gamma_256 of |w| at most. Both channel sums are float64, rounded once to float32. Min-max
    scaling then moves each value by at most minmax_bound, and the explainer's float32 scaling of each map adds
    a subtraction and a division: 2 roundings of values in [0, 1] per side."""
    with torch.no_grad():
        acts = conv[:3](x).double()[0]  # (C, h, w)
    w = conv[5].weight[cls].double()
    cam = torch.relu(torch.einsum("c,chw->hw", w, acts))
    error = (
        (gamma32(acts.shape[1] * acts.shape[2]) * torch.einsum("c,chw->hw", w.abs(), acts.abs()) + 2 * U32 * cam)
        .max()
        .item()
    )
    return minmax_bound(error, (cam.max() - cam.min()).item()) + 4 * U32


def test_an_output_without_logits_is_one_line_saying_what_to_return() -> None:
    with pytest.raises(MethodError) as err:
        logits_of({"features": torch.zeros(2, 5, 3)})
    assert ".logits" in str(err.value) and "\n" not in str(err.value)
    assert logits_of((torch.ones(2, 3), torch.zeros(2))).shape == (2, 3)
    assert logits_of({"logits": torch.ones(2, 3)}).shape == (2, 3)


# --------------------------------------------------------------------------- 7. the command line


@pytest.mark.parametrize(
    "name,default,grid_text,listed",
    [
        ("vit_small_patch16_224", "blocks.11.norm1", "14x14 tokens + 1 prefix", "blocks.5"),
        ("swin_tiny_patch4_window7_224", "layers.3", "7x7 channels-last", "layers.2"),
        ("vit_base_patch16_384", "blocks.11.norm1", "24x24 tokens + 1 prefix", "blocks.0"),
        ("vit_small_patch14_reg4_dinov2", "blocks.11.norm1", "37x37 tokens + 5 prefix", "blocks.3"),
        ("deit_small_distilled_patch16_224", "blocks.11.norm1", "14x14 tokens + 2 prefix", "blocks.10"),
        (
            "torchvision/vit_b_16",
            "encoder.layers.encoder_layer_11.ln_1",
            "14x14 tokens + 1 prefix",
            "encoder.layers.encoder_layer_4",
        ),
        ("torchvision/swin_t", "features.7", "7x7 channels-last", "features.5"),
    ],
)
def test_layers_lists_token_grids_and_the_default(name, default, grid_text, listed) -> None:
    result = runner.invoke(app, ["layers", "--model", name, "--no-cache"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith(default + " "))
    assert grid_text in line and line.rstrip().endswith("default")
    assert any(line.startswith(listed + " ") for line in result.stdout.splitlines())
    rows = json.loads(runner.invoke(app, ["layers", "--model", name, "--json", "--no-cache"]).stdout)
    [row] = [r for r in rows if r["default"]]
    assert row["path"] == default and row["layout"] in ("tokens", "channels_last")


def test_method_costs_count_a_transformers_channels() -> None:
    for name, channels in (("vit_small_patch16_224", 384), ("swin_tiny_patch4_window7_224", 768)):
        result = runner.invoke(app, ["methods", "--model", name, "--json"])
        assert result.exit_code == 0, result.output
        costs = {r["method"]: r["cost"] for r in json.loads(result.stdout)}
        assert f"{channels} runs of the network after the layer" in costs["ablationcam"]


@pytest.mark.parametrize(
    "name,layer,grid,layout,prefix",
    [
        ("vit_small_patch16_224", "blocks.11.norm1", [14, 14], "tokens", 1),
        ("swin_tiny_patch4_window7_224", "layers.3", [7, 7], "channels_last", 0),
    ],
)
def test_explain_a_transformer_with_no_layer(tmp_path, samples, name, layer, grid, layout, prefix) -> None:
    import jsonschema

    schema = json.loads((samples.parent / "gradcam_cli" / "record.schema.json").read_text())
    result = runner.invoke(
        app,
        [
            "explain",
            str(samples / "cat.png"),
            "--model",
            name,
            "--no-pretrained",
            "-o",
            str(tmp_path),
            "--json",
            "--outputs",
            "heatmap",
        ],
    )
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    jsonschema.validate(record, schema)
    assert record["layer"] == layer and record["grid"] == grid
    assert record["layout"] == layout and record["prefix_tokens"] == prefix
    assert not record["map_empty"]


def test_the_full_view_of_a_dynamic_model_is_cut_to_whole_patches() -> None:
    """The input's sides are multiples of the patch, so the token grid covers the input exactly and the map lines
    up with the photo: a photo whose scaled size is not (here 40 x 59 for a 64 x 94 photo) is scaled to one that is."""
    model = tiny_vit(dynamic_img_size=True)
    loaded = LoadedModel(model, "custom/tiny", PreprocessConfig((32, 48), 40), 5, None, "random")
    explainer = Explainer(loaded, ExplainOptions(outputs=(), view="full"))
    assert explainer.view == "full"
    patch = model.patch_embed.patch_size
    photo = np.zeros((64, 94, 3), np.uint8)
    photo[20:40, 30:60] = 255
    tensor, geometry = explainer.prepare(photo)
    height, width = tensor.shape[-2:]
    assert height % patch[0] == 0 and width % patch[1] == 0 and (height, width) == (40, 56)
    assert geometry.resized_size == (width, height) and geometry.crop_box == (0, 0, width, height)
    [[e]] = explainer.explain_prepared([tensor], [geometry])
    assert e.grid == (height // patch[0], width // patch[1])
    assert explainer.layouts_for((height, width))["blocks.1.norm1"] == Tokens(e.grid, 1)
