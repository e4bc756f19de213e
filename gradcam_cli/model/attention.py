"""Where a transformer's attention is, which token its head reads, and how a block's tokens score the classes.

Two kinds of attention module give per-head attention probabilities ``(B, H, T, T)``:

- timm's (ViT, DeiT, EVA, BEiT, CaiT's self-attention, ...): a boolean ``fused_attn`` and an ``attn_drop``
  child. With ``fused_attn`` off the module computes ``softmax(q k^T * scale)`` itself and passes it through
  ``attn_drop`` (an identity in eval mode) before multiplying the values, so a hook on ``attn_drop`` sees the
  probabilities the block really uses.
- ``nn.MultiheadAttention`` (torchvision's ViT): asked for ``need_weights=True, average_attn_weights=False`` it
  returns them. It does not use the returned tensor itself, so the gradient with respect to the probabilities is
  derived from the gradient with respect to its output (`mha_probability_gradients`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import MethodError
from .layout import Tokens, detect_layout, model_hints

TIMM = "timm"
MHA = "multihead"
CLASS_TOKEN_PARAMETERS = ("cls_token", "class_token")
SUPPORTED = (
    "transformers whose attention exposes its probabilities: timm ViT, DeiT, EVA, BEiT and other timm models with "
    "`fused_attn` and `attn_drop` in their attention, or nn.MultiheadAttention (torchvision ViT)"
)


@dataclass(frozen=True)
class AttentionSite:
    """One attention module, and the block whose output is that layer's tokens (what LeGrad scores)."""

    path: str
    module: nn.Module
    kind: str  # TIMM or MHA
    block: nn.Module


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.MultiheadAttention):
        return MHA
    if isinstance(getattr(module, "fused_attn", None), bool) and isinstance(
        getattr(module, "attn_drop", None), nn.Module
    ):
        return TIMM
    return None


def attention_sites(model: nn.Module) -> list[AttentionSite]:
    """Every attention module with per-head probabilities, outermost only, in definition order."""
    named = dict(model.named_modules())
    sites: list[AttentionSite] = []
    for path, module in named.items():
        kind = _kind(module)
        if kind is None or any(path.startswith(site.path + ".") for site in sites):
            continue
        parent = named.get(path.rpartition(".")[0]) if "." in path else model
        # A block that is its own attention (timm's parallel blocks) sits directly in a sequence of blocks.
        block = module if parent is None or isinstance(parent, (nn.Sequential, nn.ModuleList)) else parent
        sites.append(AttentionSite(path, module, kind, block))
    return sites


def require_sites(model: nn.Module, method: str) -> list[AttentionSite]:
    sites = attention_sites(model)
    if not sites:
        raise MethodError(f"--method {method}: the model has no attention module; it applies to {SUPPORTED}")
    return sites


def reads_class_token(model: nn.Module) -> bool:
    """Whether the head reads the class token (timm's ``global_pool == "token"``, torchvision's ViT), rather than a
    pooling of the grid tokens."""
    pool = getattr(model, "global_pool", None)
    if isinstance(pool, str):
        return pool == "token"
    return any(name.rpartition(".")[2] in CLASS_TOKEN_PARAMETERS for name, _ in model.named_parameters())


def token_layout(model: nn.Module, tokens: int, input_size: tuple[int, int], method: str) -> Tokens:
    """The patch grid and prefix tokens of ``tokens`` attention tokens at ``input_size``, read as a token layer's
    output is (`detect_layout`); refused when they cannot be told."""
    found = detect_layout((1, tokens, 1), 1, tuple(input_size), model_hints(model, tuple(input_size)))
    if isinstance(found, Tokens) and not found.sequence_first:
        return found
    why = found if isinstance(found, str) else f"{tokens} tokens are no patch grid at input {input_size}"
    raise MethodError(f"--method {method}: the attention's {why}")


def token_scores(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """LeGrad's score of one block: the class logits the model's head gives the mean of the block's tokens, after
    the final norm (``(B, T, C) -> (B, N)``), as torchcam's LeGrad projects torchvision ViT's tokens; None when
    the model's head cannot be applied to a block's tokens."""
    heads, encoder = getattr(model, "heads", None), getattr(model, "encoder", None)
    final_norm = getattr(encoder, "ln", None)
    if isinstance(heads, nn.Module) and isinstance(final_norm, nn.Module):  # torchvision ViT
        return lambda tokens: heads(final_norm(tokens.mean(dim=1)))
    head, norm = getattr(model, "forward_head", None), getattr(model, "norm", None)
    if callable(head) and isinstance(norm, nn.Module):  # timm: forward_head pools, applies fc_norm and the head

        def project(tokens: torch.Tensor) -> torch.Tensor:
            mean = norm(tokens.mean(dim=1, keepdim=True))
            # Every token the mean: the head's pooling (class token, average, ...) then reads the mean.
            return head(mean.expand(-1, tokens.shape[1], -1))

        return project
    return None


def mha_value_heads(module: nn.MultiheadAttention, value: torch.Tensor) -> torch.Tensor:
    """``(B, S, E)`` value input -> ``(B, H, S, D)`` per-head values, as the module projects them."""
    e, h = module.embed_dim, module.num_heads
    weight = module.v_proj_weight if module.in_proj_weight is None else module.in_proj_weight[2 * e :]
    bias = None if module.in_proj_bias is None else module.in_proj_bias[2 * e :]
    v = F.linear(value, weight, bias)
    return v.reshape(v.shape[0], v.shape[1], h, e // h).transpose(1, 2)


def mha_probability_gradients(
    module: nn.MultiheadAttention, output_gradient: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    """``d s / d A`` for the per-head probabilities ``A`` of ``nn.MultiheadAttention`` from ``d s / d out``
    (``(B, T, E)``, batch first): ``out = concat_h(A_h V_h) W_o^T + b_o``, so ``d s / d A_h = (d s / d O_h) V_h^T``
    with ``d s / d O = (d s / d out) W_o``. Exact: ``A`` reaches ``s`` only through ``out``."""
    e, h = module.embed_dim, module.num_heads
    per_head = (output_gradient @ module.out_proj.weight.to(output_gradient.dtype)).reshape(
        output_gradient.shape[0], output_gradient.shape[1], h, e // h
    )
    values = mha_value_heads(module, value.to(output_gradient.dtype))
    return per_head.transpose(1, 2) @ values.transpose(-2, -1)


def check_multihead(module: nn.MultiheadAttention, path: str, method: str) -> None:
    """Refuse what the gradient derivation above does not cover."""
    if module.bias_k is not None or module.bias_v is not None or module.add_zero_attn:
        raise MethodError(f"--method {method}: attention {path!r} adds key/value tokens (bias_kv, add_zero_attn)")
    if module.dropout and module.training:
        raise MethodError(f"--method {method}: attention {path!r} has active dropout; put the model in eval mode")
