"""A photo's concept sheet: the photo, the photo coloured by concept, and a legend of what each concept votes
for.

Each pixel takes the colour of the concept whose (scaled) map is strongest there, as bright as that map
(Collins et al. colour their concepts the same way); the colouring is blended with the photo.
"""

from __future__ import annotations

import numpy as np

from .fonts import fit_text, line_height, paste, text_patch

TEXT_PX = 14
GAP = 8


def concept_colours(k: int) -> np.ndarray:
    """``(k, 3)`` uint8 colours, one per concept: matplotlib's tab10/tab20 where they suffice, else hues."""
    from matplotlib import colormaps

    if k <= 10:
        rgb = colormaps["tab10"](np.arange(k))[:, :3]
    elif k <= 20:
        rgb = colormaps["tab20"](np.arange(k))[:, :3]
    else:
        rgb = colormaps["hsv"](np.arange(k) / k)[:, :3]
    return np.round(rgb * 255).astype(np.uint8)


def coloured(photo: np.ndarray, maps: np.ndarray, colours: np.ndarray, photo_weight: float = 0.4) -> np.ndarray:
    """``(H, W, 3)`` uint8 photo and ``(K, H, W)`` maps in [0, 1] -> the photo coloured by its strongest concept."""
    strongest = maps.argmax(axis=0)
    strength = np.take_along_axis(maps, strongest[None], axis=0)[0]
    colour = colours[strongest].astype(np.float64) * strength[..., None]
    blended = photo_weight * photo.astype(np.float64) + (1 - photo_weight) * colour
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def concept_sheet(photo: np.ndarray, maps: np.ndarray, colours: np.ndarray, legend: list[str]) -> np.ndarray:
    """The photo and its colouring side by side, the legend below: a swatch and a line per concept."""
    h, w = photo.shape[:2]
    width = 2 * w + GAP
    row = line_height(TEXT_PX) + 4
    canvas = np.full((h + GAP + row * len(legend), width, 3), 255, dtype=np.uint8)
    canvas[:h, :w] = photo
    canvas[:h, w + GAP :] = coloured(photo, maps, colours)
    for i, line in enumerate(legend):
        y = h + GAP + i * row
        canvas[y + 2 : y + row - 2, 0 : row - 4] = colours[i]
        text, size = fit_text(line, TEXT_PX, width - row)
        paste(canvas, text_patch(text, size), row, y + 2)
    return canvas
