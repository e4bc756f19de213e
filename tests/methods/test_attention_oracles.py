"""Rollout, Chefer's rule and LeGrad against reference loops written from the papers, and LeGrad against torchcam.

The references do what the papers' own code does, independently of ours: a copy of the model with every
attention unfused, the probabilities taken at ``attn_drop`` with ``retain_grad`` and one ``.backward()`` of the
class score (Chefer et al.'s released code keeps them the same way), then the arithmetic of the paper written out
image by image. For torchvision's ViT the reference replaces each ``nn.MultiheadAttention`` of a copy by an
explicit softmax(q k^T / sqrt(d)) v, so it shares nothing with our derivation of the probabilities' gradients from
the attention's output gradient.

Every comparison is in float64 on both sides, at small inputs of full-depth models; the maps are compared after
min-max scaling within 1e-5 (float64 rounding is ~1e-16 per operation; a wrong row, prefix, head fusion or
gradient moves them by 1e-1).
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

from gradcam_cli.maps.scale import normalize_minmax  # noqa: E402
from gradcam_cli.model.layers import layer_layouts  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

TOL = 1e-5
MODELS = {  # name -> (timm name, input size): 3x4 or 4x3 patch grids at full depth
    "vit": ("vit_small_patch16_224", (48, 64)),
    "deit_distilled": ("deit_small_distilled_patch16_224", (64, 48)),
    "eva02": ("eva02_tiny_patch14_224", (42, 56)),
}


@functools.cache
def timm_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(MODELS[name][0], pretrained=False, dynamic_img_size=True).eval().double()


def inputs(size: tuple[int, int], n: int = 2, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def scaled(maps: torch.Tensor, what: str) -> torch.Tensor:
    out, empty = normalize_minmax(maps)
    assert not empty.any(), f"{what}: an empty map would make the comparison vacuous"
    return out


def assert_close(ours: torch.Tensor, reference: torch.Tensor, what: str) -> None:
    a, b = scaled(ours, what), scaled(reference, what)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    assert (a - b).abs().max().item() <= TOL, what


# --------------------------------------------------------------------------- the references


class Reference:
    """An unfused copy of a timm model that keeps each block's probabilities (``retain_grad``) and output tokens."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False)  # gradients flow from the input, none to weights
        self.probabilities: list[torch.Tensor] = []
        self.tokens: list[torch.Tensor] = []
        for m in self.model.modules():
            if hasattr(m, "fused_attn") and hasattr(m, "attn_drop"):
                m.fused_attn = False
                m.attn_drop.register_forward_hook(self._keep)
        for block in self.model.blocks:
            block.register_forward_hook(lambda _m, _i, out: self.tokens.append(out))

    def _keep(self, _m, _i, out) -> None:
        if out.requires_grad:
            out.retain_grad()
        self.probabilities.append(out)

    def __call__(self, x: torch.Tensor, keep_grad: bool):
        """(logits, per-block probabilities, per-block output tokens) of one forward pass."""
        self.probabilities, self.tokens = [], []
        logits = self.model(x.clone().requires_grad_(keep_grad))
        return logits, self.probabilities, self.tokens


@functools.cache
def reference_of(name: str) -> Reference:
    return Reference(timm_model(name))


def read_rows(r: torch.Tensor, prefix: int, class_token: bool, grid) -> torch.Tensor:
    rows = r[0, prefix:] if class_token else r[prefix:, prefix:].mean(dim=0)
    return rows.reshape(grid)


def rollout_reference(ref: Reference, x, prefix, class_token, grid, fusion="mean", discard=0.0) -> torch.Tensor:
    """Abnar & Zuidema: per block fuse the heads, drop the smallest share, add I, renormalise rows, multiply."""
    with torch.no_grad():
        _, probabilities, _ = ref(x, keep_grad=False)
    maps = []
    for i in range(x.shape[0]):
        t = probabilities[0].shape[-1]
        result = torch.eye(t, dtype=x.dtype)
        for a in probabilities:
            heads = a[i]
            fused = {"mean": heads.mean(0), "max": heads.max(0).values, "min": heads.min(0).values}[fusion].clone()
            dropped = int(discard * t * t)
            if dropped:
                fused.view(-1)[fused.view(-1).argsort()[:dropped]] = 0.0
            fused = fused + torch.eye(t, dtype=x.dtype)
            result = (fused / fused.sum(dim=-1, keepdim=True)) @ result
        maps.append(read_rows(result, prefix, class_token, grid))
    return torch.stack(maps)


def chefer_reference(ref: Reference, x, classes, prefix, class_token, grid) -> torch.Tensor:
    """Chefer et al. (ICCV 2021): R = I; per block R += mean_h ReLU(grad * A) @ R; one image at a time."""
    maps = []
    for i in range(x.shape[0]):
        logits, probabilities, _ = ref(x[i : i + 1], keep_grad=True)
        logits[0, int(classes[i])].backward()
        r = torch.eye(probabilities[0].shape[-1], dtype=x.dtype)
        for a in probabilities:
            r = r + (a.grad[0] * a[0]).clamp(min=0).mean(dim=0) @ r
        maps.append(read_rows(r.detach(), prefix, class_token, grid))
    return torch.stack(maps)


def timm_block_score(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """LeGrad's block score for timm models, written out per head type: the head on the mean token after the
    final norm and fc_norm; DeiT distilled averages its two heads."""
    pooled = model.fc_norm(model.norm(tokens.mean(dim=1)))
    if getattr(model, "head_dist", None) is not None:
        return (model.head(pooled) + model.head_dist(pooled)) / 2
    return model.head(pooled)


def legrad_reference(ref: Reference, x, classes, prefix, grid) -> torch.Tensor:
    """torchcam's LeGrad: per block, ReLU(d score_block / d A) averaged over heads and queries, prefix keys
    dropped; the mean over blocks."""
    maps = []
    for i in range(x.shape[0]):
        _, probabilities, tokens = ref(x[i : i + 1], keep_grad=True)
        per_block = []
        for a, out in zip(probabilities, tokens):
            score = timm_block_score(ref.model, out)[0, int(classes[i])]
            (g,) = torch.autograd.grad(score, a, retain_graph=True)
            per_block.append(g[0].clamp(min=0).mean(dim=(0, 1))[prefix:].reshape(grid))
        maps.append(torch.stack(per_block).mean(dim=0))
    return torch.stack(maps)


# --------------------------------------------------------------------------- timm: ViT, DeiT distilled, EVA-02


@pytest.mark.parametrize("name", list(MODELS))
def test_rollout_chefer_and_legrad_match_the_reference_loops(name: str) -> None:
    model, size = timm_model(name), MODELS[name][1]
    x = inputs(size)
    result = explain_batch(model, x, {}, methods=["rollout", "chefer", "legrad"], top_k=2)
    layout = result.layouts["attention"]
    prefix, grid = layout.prefix, layout.grid
    assert (prefix, grid) == {"vit": (1, (3, 4)), "deit_distilled": (2, (4, 3)), "eva02": (1, (3, 4))}[name]
    class_token = name != "eva02"  # EVA-02 averages its grid tokens (global_pool "avg")
    ref = reference_of(name)
    rolled = rollout_reference(ref, x, prefix, class_token, grid)
    for k in range(2):
        classes = result.classes[:, k]
        assert_close(result.maps["rollout", "attention"][:, k], rolled, f"{name} rollout")
        chefer = chefer_reference(ref, x, classes, prefix, class_token, grid)
        assert_close(result.maps["chefer", "attention"][:, k], chefer, f"{name} chefer class {k}")
        legrad = legrad_reference(ref, x, classes, prefix, grid)
        assert_close(result.maps["legrad", "attention"][:, k], legrad, f"{name} legrad class {k}")


@pytest.mark.parametrize("fusion,discard", [("mean", 0.5), ("max", 0.0), ("max", 0.3), ("min", 0.9)])
def test_rollout_head_fusion_and_discard_match_the_reference(fusion: str, discard: float) -> None:
    model, size = timm_model("vit"), MODELS["vit"][1]
    x = inputs(size)
    settings = {"rollout_fusion": fusion, "rollout_discard": discard}
    ours = explain_batch(model, x, {}, methods=["rollout"], settings=settings).maps["rollout", "attention"][:, 0]
    ref = reference_of("vit")
    assert_close(ours, rollout_reference(ref, x, 1, True, (3, 4), fusion, discard), f"rollout {fusion} {discard}")


def test_the_captured_probabilities_are_softmax_of_the_queries_and_keys() -> None:
    """The probabilities the unfused pass forms are those the fused kernel uses: recomputed by hand from the
    qkv projection of every block, and the logits are the fused model's."""
    model, size = timm_model("vit"), MODELS["vit"][1]
    x = inputs(size)
    with torch.no_grad():
        logits, probabilities, _ = reference_of("vit")(x, keep_grad=False)
        assert (logits - model(x)).abs().max().item() <= 1e-12
        qkv_out = []
        handles = [b.attn.qkv.register_forward_hook(lambda _m, _i, o: qkv_out.append(o)) for b in model.blocks]
        model(x)
        for h in handles:
            h.remove()
        for block, qkv, a in zip(model.blocks, qkv_out, probabilities):
            heads = block.attn.num_heads
            q, k, _ = qkv.reshape(x.shape[0], qkv.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4)
            by_hand = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
            assert (by_hand - a).abs().max().item() <= 1e-12


# --------------------------------------------------------------------------- torchvision ViT: nn.MultiheadAttention


def tv_vit() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10
    )
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts the head at zero: no gradient at all
    return model.eval().double()


class ExplicitSelfAttention(nn.Module):
    """softmax(q k^T / sqrt(d)) v with an nn.MultiheadAttention's weights, keeping the probabilities."""

    def __init__(self, mha: nn.MultiheadAttention, kept: list) -> None:
        super().__init__()
        self.mha, self.kept = mha, kept

    def forward(self, query, key, value, need_weights=True):
        e, h = self.mha.embed_dim, self.mha.num_heads
        q, k, v = nn.functional.linear(query, self.mha.in_proj_weight, self.mha.in_proj_bias).chunk(3, dim=-1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], h, e // h).transpose(1, 2)  # noqa: E731
        a = torch.softmax(split(q) @ split(k).transpose(-2, -1) / math.sqrt(e // h), dim=-1)
        a.retain_grad()
        self.kept.append(a)
        out = (a @ split(v)).transpose(1, 2).reshape(query.shape)
        return self.mha.out_proj(out), None


def tv_reference(model: nn.Module, x: torch.Tensor, class_index: int):
    """Per-block probabilities and their gradients (Chefer) of one image, in an explicit copy."""
    copied, kept = copy.deepcopy(model), []
    for layer in copied.encoder.layers:
        layer.self_attention = ExplicitSelfAttention(layer.self_attention, kept)
    logits = copied(x)
    assert (logits - model(x)).abs().max().item() <= 1e-12
    logits[0, class_index].backward()
    return kept


def test_torchvision_vit_rollout_and_chefer_match_an_explicit_attention() -> None:
    model, x = tv_vit(), inputs((32, 32))
    result = explain_batch(model, x, {}, methods=["rollout", "chefer"])
    assert (result.layouts["attention"].prefix, result.layouts["attention"].grid) == (1, (4, 4))
    rolled, chefer = [], []
    for i in range(x.shape[0]):
        kept = tv_reference(model, x[i : i + 1], int(result.classes[i, 0]))
        r_roll = r_chefer = torch.eye(17, dtype=x.dtype)
        for a in kept:
            fused = a[0].mean(dim=0) + torch.eye(17, dtype=x.dtype)
            r_roll = (fused / fused.sum(dim=-1, keepdim=True)) @ r_roll
            r_chefer = r_chefer + (a.grad[0] * a[0]).clamp(min=0).mean(dim=0) @ r_chefer
        rolled.append(r_roll[0, 1:].reshape(4, 4).detach())
        chefer.append(r_chefer[0, 1:].reshape(4, 4).detach())
    assert_close(result.maps["rollout", "attention"][:, 0], torch.stack(rolled), "torchvision rollout")
    assert_close(result.maps["chefer", "attention"][:, 0], torch.stack(chefer), "torchvision chefer")


def test_legrad_matches_torchcam_on_torchvision_vit() -> None:
    """torchcam 0.5's LeGrad runs on torchvision's ViT with its own score projection (the head on the final norm
    of the mean token), at every encoder block."""
    from torchcam.methods import LeGrad

    model, x = tv_vit(), inputs((32, 32))
    result = explain_batch(model, x, {}, methods=["legrad"], top_k=2)
    for k in range(2):
        classes = result.classes[:, k].tolist()
        with LeGrad(model, list(model.encoder.layers)) as extractor:
            theirs = extractor(classes, model(x), normalized=False)[0]
        assert_close(result.maps["legrad", "attention"][:, k], theirs.detach(), f"torchcam legrad class {k}")


# --------------------------------------------------------------------------- a known answer


def focused_vit(target: int, grid=(3, 5), dim: int = 8, depth: int = 2) -> nn.Module:
    """A ViT whose class token attends to one patch, ``target``, in every block: the queries read a marker
    dimension only the class token carries, the keys one only that patch carries, and the values a dimension the
    head reads for class 0. Every other weight is small noise, so the input still moves the logits."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(1)
    model = (
        VisionTransformer(
            img_size=(grid[0] * 8, grid[1] * 8),
            patch_size=8,
            embed_dim=dim,
            depth=depth,
            num_heads=1,
            num_classes=2,
            qkv_bias=False,
            mlp_ratio=1.0,
        )
        .eval()
        .double()
    )
    query, value, key = 0, 1, 2  # marker dimensions
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 1e-3)
        for norm in [model.norm] + [n for b in model.blocks for n in (b.norm1, b.norm2)]:
            norm.weight.fill_(1.0)
        pos = torch.randn(1 + grid[0] * grid[1], dim, dtype=torch.float64) * 0.1
        pos[:, [query, key]] = 0.0
        pos -= pos.mean(dim=1, keepdim=True)  # the grid tokens' markers stay 0 after the norm
        pos[0] = 0.0
        pos[0, query] = 1.0
        pos[1 + target, key], pos[1 + target, value] = 1.0, 0.5
        model.pos_embed.copy_(pos[None])
        for block in model.blocks:
            w = block.attn.qkv.weight  # rows: q, k, v
            w[0, query] = w[dim, key] = 6.0
            w[2 * dim + value, value] = 1.0
            block.attn.proj.weight[value, value] = 1.0
        model.head.weight[0, value], model.head.weight[1, value] = 1.0, -1.0
    return model


@pytest.mark.parametrize("target", [0, 3, 11, 14])
def test_rollout_and_chefer_peak_at_the_patch_the_class_token_attends_to(target: int) -> None:
    """The peak is the target patch on a 3x5 grid (raster order), at least twice the next patch: rollout's
    residual identity spreads some of the class token's row over the patches the target attends to."""
    model = focused_vit(target)
    x = inputs((24, 40), n=3)
    result = explain_batch(model, x, {}, methods=["rollout", "chefer"], classes=[0])
    for method in ("rollout", "chefer"):
        maps = result.maps[method, "attention"][:, 0]
        assert maps.shape[-2:] == (3, 5)
        assert maps.flatten(1).argmax(dim=1).tolist() == [target] * 3, method
        others = maps.flatten(1)[:, [i for i in range(15) if i != target]]
        assert (others.amax(dim=1) <= 0.5 * maps.flatten(1)[:, target]).all(), method


@pytest.mark.parametrize("path", ["patch_embed", "blocks.0.norm1", "blocks.2.norm1", "norm"])
def test_sharing_the_pass_with_grad_cam_at_any_layer_changes_no_map(path: str) -> None:
    """Grad-CAM's layer may become the graph's leaf: before the first attention (the attention then is not the
    leaf), inside the blocks or after the last one. Every map is the one each method gives alone (float64; the
    unfused attention Grad-CAM then sees computes the same function up to rounding)."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(32, 48), depth=3, num_classes=5)
    model = model.eval().double()
    x = inputs((32, 48))
    methods = ["chefer", "legrad", "inputxgradient"]
    layers = {path: model.get_submodule(path)}
    layouts = layer_layouts(model, layers, (32, 48))
    alone = explain_batch(model, x, {}, methods=methods, top_k=2).maps
    gradcam = explain_batch(model, x, layers, methods=["gradcam"], top_k=2, layouts=layouts).maps
    shared = explain_batch(model, x, layers, methods=["gradcam", *methods], top_k=2, layouts=layouts).maps
    for key, value in {**alone, **gradcam}.items():
        assert (shared[key] - value).abs().max().item() <= 1e-12 * max(1.0, value.abs().max().item()), key
