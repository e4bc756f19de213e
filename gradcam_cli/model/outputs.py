"""Finding the logits in whatever a model's forward pass returns.

timm and torchvision classifiers return a ``(B, N)`` tensor; Hugging Face-style models
return a ``ModelOutput`` dataclass with ``.logits`` (also readable as ``["logits"]``);
other code returns a tuple whose first element is the logits. Every forward pass of this
package reads its output through `logits_of`.
"""

from __future__ import annotations

import torch

from ..errors import MethodError


def logits_of(output: object) -> torch.Tensor:
    """The ``(B, N)`` logits in a model's output: a tensor, ``.logits``, ``["logits"]`` or a first element."""
    candidates = [output, getattr(output, "logits", None)]
    if isinstance(output, dict):
        candidates.append(output.get("logits"))
    if isinstance(output, (tuple, list)) and output:
        candidates.append(output[0])
    for c in candidates:
        if isinstance(c, torch.Tensor) and c.ndim == 2:
            return c
    raise MethodError(
        f"the model must return (batch, classes) logits; it returned {type(output).__name__}, "
        "with no 2-D tensor as itself, .logits, ['logits'] or its first element"
    )
