"""Transformer layouts on a GPU: every method on CUDA equals the CPU, fp16/bf16 autocast runs, and a
Hugging Face ViT (random init, a `ModelOutput` with `.logits`) is explained with no flags.

    python benchmarks/transformers_gpu_check.py   # prints one line per check; exits 1 on a mismatch
"""

from __future__ import annotations

import sys
import time

import torch

from gradcam_cli import ExplainOptions, Explainer, explain, load_model
from gradcam_cli.maps.scale import normalize_minmax

METHODS = ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam", "scorecam",
           "ablationcam")
GRADIENT_ONLY = ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam")
# Score-CAM and Ablation-CAM run hundreds of forward passes: on the two smaller models only (the CPU reference is slow).
MODELS = {"vit_small_patch16_224": METHODS, "swin_tiny_patch4_window7_224": METHODS,
          "deit_small_distilled_patch16_224": GRADIENT_ONLY, "torchvision/vit_b_16": GRADIENT_ONLY,
          "torchvision/swin_t": GRADIENT_ONLY}


def maps_on(loaded, x, precision="fp32", methods=METHODS):
    explainer = Explainer(loaded, ExplainOptions(methods=methods, outputs=(), precision=precision))
    from gradcam_cli.engine import explain_batch

    layers = explainer.layers
    out = explain_batch(loaded.model, x.to(next(loaded.model.parameters()).device), layers, methods=list(methods),
                        precision=precision, layouts=explainer.layouts, classes=[1, 7])
    return {k: normalize_minmax(v.float().cpu())[0] for k, v in out.maps.items()}, explainer


def main() -> int:
    ok = True
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for name, methods in MODELS.items():
        torch.manual_seed(0)
        cpu = load_model(name, pretrained=False, device="cpu")
        if name == "torchvision/vit_b_16":
            torch.nn.init.normal_(cpu.model.heads.head.weight, std=0.02)  # torchvision starts it at zero
        state = {k: v.clone() for k, v in cpu.model.state_dict().items()}
        ref, explainer = maps_on(cpu, x, methods=methods)
        gpu = load_model(name, pretrained=False, device="cuda")
        gpu.model.load_state_dict(state)
        t = time.perf_counter()
        got, _ = maps_on(gpu, x, methods=methods)
        torch.cuda.synchronize()
        worst = max((got[k] - ref[k]).abs().max().item() for k in ref)
        layer = next(iter(explainer.layouts))
        print(f"{name}: layer {layer} ({explainer.layouts[layer].describe()}), {len(methods)} methods, "
              f"cuda vs cpu max diff {worst:.2e} ({time.perf_counter() - t:.2f} s on cuda)")
        ok &= worst <= 1e-3
        for precision in ("fp16", "bf16"):
            half, _ = maps_on(gpu, x, precision, ("gradcam", "ablationcam"))
            diff = max((half[k] - ref[k]).abs().max().item() for k in half)
            print(f"  {precision}: gradcam + ablationcam run, max diff to fp32 {diff:.3f}")
    ok &= hugging_face()
    return 0 if ok else 1


def hugging_face() -> bool:
    try:
        from transformers import ViTConfig, ViTForImageClassification
    except ImportError:
        print("transformers not installed: Hugging Face check skipped")
        return True
    torch.manual_seed(0)
    config = ViTConfig(image_size=64, patch_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=128, num_labels=5)
    model = ViTForImageClassification(config).eval().cuda()
    x = torch.randn(2, 3, 64, 64)
    results = explain(model, list(x), methods=("gradcam", "scorecam", "ablationcam"))
    r = results[0]
    rec = r.records[0]
    print(f"huggingface ViT: layer {rec['layer']}, grid {rec['grid']}, layout {rec['layout']}, "
          f"prefix {rec['prefix_tokens']}, maps {sorted(m for m, _ in r.maps)}, empty {rec['map_empty']}")
    return rec["grid"] == [4, 4] and rec["prefix_tokens"] == 1 and rec["layout"] == "tokens"


if __name__ == "__main__":
    sys.exit(main())
