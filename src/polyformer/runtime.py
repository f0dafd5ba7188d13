"""Process-level CPU settings that change speed, never results.

glibc's malloc serves every allocation above a threshold (at most 32 MiB by default) with a fresh
``mmap`` and returns it to the system on free. A training step on long sequences allocates and frees
activations of tens to hundreds of MiB each; every one of them is then page-faulted in (zero-filled by
the kernel, 4 KiB at a time) on every step. On CPU that can be more than half the time of a
long-sequence step: a Hyena block (forward and backward) at 32K tokens took 4.0 s with the defaults
and 1.7 s with :func:`retain_freed_memory` (``benchmarks/hyena_scaling.py``, with and without
``--default-malloc``). The price is resident memory: what a step frees stays with the process for the
next step instead of going back to the system (which is what a training loop wants anyway), and the
heap fragments, so the peak is higher (3.7 GiB against 2.4 GiB for that block at 64K tokens). Same
effect as the environment variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``, or as
preloading jemalloc or tcmalloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1
_applied = False


def retain_freed_memory(mmap_threshold: int = 1 << 30) -> bool:
    """Serve allocations up to ``mmap_threshold`` bytes (default 1 GiB) from the heap and keep freed
    heap memory in the process. Process-wide and idempotent; returns False (and changes nothing) where
    the C library is not glibc."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has it  # noqa: B018
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    value = max(1, min(int(mmap_threshold), _INT_MAX))
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    return _applied
