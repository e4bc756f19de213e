#!/usr/bin/env python
"""What a pytorch-grad-cam user writes to get our four images for every photo in a folder.

    python benchmarks/pgc_script.py FOLDER OUTPUT_DIR [--model tf_efficientnet_lite0] [--limit N]

For each photo: load with PIL, preprocess with timm's eval transform, GradCAM on the
layer `gradcam` uses by default, GuidedBackpropReLUModel, then write
``<stem>_heatmap.png``, ``<stem>_overlay.png``, ``<stem>_guided.png`` and
``<stem>_bbox.png`` at the photo's resolution with OpenCV (the 224x224 map is resized
to the photo with cv2; the box is around the largest region of the map >= 0.5).

The model comes from ``gradcam_cli.load_model`` so that the weights are the very same
ones the CLI uses (bundled EfficientNet-Lite0; random init for any other model).
One image per call, as in pytorch-grad-cam's own examples; torch threads are left at
torch's default, as the CLI leaves them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
from pytorch_grad_cam.utils.image import deprocess_image, show_cam_on_image
from timm.data import create_transform, resolve_data_config

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gradcam_cli import default_layer, load_model, trace_layers  # noqa: E402
from gradcam_cli.model.loading import DEFAULT_MODEL  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("output_dir", type=Path)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--layer", default=None, help="module path (default: the layer `gradcam` picks)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos")
    args = ap.parse_args()

    start = time.perf_counter()
    # The model as timm builds it (contiguous, BatchNorm separate): what a pytorch-grad-cam user has.
    loaded = load_model(args.model, pretrained=args.model == DEFAULT_MODEL, memory_format="contiguous", fold_bn=False)
    model = loaded.model.eval()
    layer_path = args.layer or default_layer(model, trace_layers(model, loaded.preprocess.input_size))
    target_layer = dict(model.named_modules())[layer_path]
    transform = create_transform(**resolve_data_config({}, model=model))

    photos = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
    if args.limit is not None:
        photos = photos[: args.limit]
    args.output_dir.mkdir(parents=True, exist_ok=True)

    with GradCAM(model=model, target_layers=[target_layer]) as cam:
        gb_model = GuidedBackpropReLUModel(model=model, device="cpu")
        for path in photos:
            rgb = np.array(Image.open(path).convert("RGB"))
            h, w = rgb.shape[:2]
            input_tensor = transform(Image.fromarray(rgb)).unsqueeze(0)

            grayscale_cam = cam(input_tensor=input_tensor, targets=None)[0]  # (224, 224) in [0, 1]
            probs = torch.softmax(cam.outputs.detach(), dim=1)[0]
            cls = int(probs.argmax())
            cam_full = cv2.resize(grayscale_cam, (w, h))

            heatmap = cv2.applyColorMap(np.uint8(255 * cam_full), cv2.COLORMAP_JET)
            overlay = show_cam_on_image(np.float32(rgb) / 255, cam_full, use_rgb=True)

            gb = gb_model(input_tensor, target_category=cls)
            cam_mask = cv2.merge([grayscale_cam, grayscale_cam, grayscale_cam])
            cam_gb = cv2.resize(deprocess_image(cam_mask * gb), (w, h))

            boxed = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            contours, _ = cv2.findContours(np.uint8(cam_full >= 0.5), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            if contours:
                x, y, bw, bh = cv2.boundingRect(max(contours, key=cv2.contourArea))
                cv2.rectangle(boxed, (x, y), (x + bw, y + bh), (0, 255, 0), 2)
                label = loaded.labels[cls] if loaded.labels else str(cls)
                cv2.putText(
                    boxed,
                    f"{label} {float(probs[cls]):.2f}",
                    (x, max(12, y - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.5,
                    (0, 255, 0),
                    1,
                )

            stem = args.output_dir / path.stem
            cv2.imwrite(f"{stem}_heatmap.png", heatmap)
            cv2.imwrite(f"{stem}_overlay.png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            cv2.imwrite(f"{stem}_guided.png", cv2.cvtColor(cam_gb, cv2.COLOR_RGB2BGR))
            cv2.imwrite(f"{stem}_bbox.png", boxed)
    print(f"{len(photos)} photos, layer {layer_path}, {time.perf_counter() - start:.1f} s -> {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
