"""The one place where hooks are put on modules and taken off again.

Every hook this package installs goes through `installed`, so none can outlive
the block that needed it, whatever is raised inside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from torch import nn

Hook = Callable[..., object]


@contextmanager
def installed(
    forward: Iterable[tuple[nn.Module, Hook]] = (),
    pre: Iterable[tuple[nn.Module, Hook]] = (),
    with_kwargs: bool = False,
) -> Iterator[None]:
    """Forward hooks (``forward``) and forward pre-hooks (``pre``), removed on exit. With ``with_kwargs`` the hooks
    also receive the call's keyword arguments (PyTorch's ``with_kwargs=True``)."""
    handles = []
    try:
        handles += [module.register_forward_hook(hook, with_kwargs=with_kwargs) for module, hook in forward]
        handles += [module.register_forward_pre_hook(hook, with_kwargs=with_kwargs) for module, hook in pre]
        yield
    finally:
        for handle in handles:
            handle.remove()
