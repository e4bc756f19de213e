"""Models: loading by name, safe weights, BatchNorm folding, class names, layers and their cache, devices, hooks."""
