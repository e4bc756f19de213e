"""glibc malloc settings that suit tensor work: freed blocks are kept for reuse, not unmapped.

PyTorch's CPU tensors come straight from ``malloc``. glibc serves every block above a
threshold (at most 32 MiB) with its own ``mmap`` and gives it back on ``free``, and it
trims the heap's free top; so each forward and backward pass faults its activations
in again, page by page, and the kernel zeroes every page. Serving all blocks from the
heap, and keeping what is freed there, turns the second and later passes into plain
reuse: the guided pass of EfficientNet-Lite0 at batch 8 takes 0.66x the time
(``benchmarks/allocator.py``). PyTorch's CPU tuning guide gets the same by preloading
jemalloc or tcmalloc; here it takes two ``mallopt`` calls.
"""

from __future__ import annotations

import ctypes
import os
import sys

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_FREE_BYTES = 1 << 30  # the heap's free top is returned to the system only beyond this
OPT_OUT_ENV = "GRADCAM_DEFAULT_MALLOC"  # set to 1 to leave the C library's defaults alone


def _glibc():
    """The process's glibc, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        process = ctypes.CDLL(None)  # the symbols already loaded, libc's among them
        _ = process.gnu_get_libc_version  # glibc only: musl has no such symbol, and its mallopt is a stub
        return process
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Give the free pages of every malloc arena back to the system (glibc's ``malloc_trim``); True if done.

    For after a rare, very large temporary (a 120 Mpx photo decoded, 480 MB, then scaled
    down): kept for reuse, it would stay resident in the arena of the thread that decoded
    it, where no other thread's allocations can use it. Harmless to call from a library.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    libc.malloc_trim.restype = ctypes.c_int
    libc.malloc_trim(0)
    return True


def keep_freed_memory() -> bool:
    """Make glibc keep large freed blocks for reuse; True if applied.

    A no-op returning False on other C libraries and systems, or when the
    ``GRADCAM_DEFAULT_MALLOC`` environment variable is set to a non-empty value other than 0.
    The setting is process-wide, so library code never calls this: the ``gradcam``
    command does, at start, and a program of your own may.
    """
    if os.environ.get(OPT_OUT_ENV, "0") not in ("", "0"):
        return False
    process = _glibc()
    if process is None:
        return False
    mallopt = process.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE_BYTES))
