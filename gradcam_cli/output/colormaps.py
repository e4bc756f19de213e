"""The colour maps a heatmap can use (names only: checked by the options without importing OpenCV)."""

# JET for continuity with the Grad-CAM papers' figures; the others are perceptually uniform
# (equal steps in the map look like equal steps in colour), turbo is a smoother JET.
COLORMAPS = ("jet", "viridis", "inferno", "turbo", "magma", "plasma", "cividis")
DEFAULT_COLORMAP = "jet"
