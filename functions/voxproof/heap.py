"""Keep a long-lived process's memory from ratcheting up: large buffers go back to the OS.

glibc serves an allocation of 128 KiB or more with its own ``mmap`` (returned to the OS on
free) until a freed one raises its *dynamic* threshold, up to 32 MiB; from then on buffers up to
that size come from the heap, where any small object still alive above them keeps the pages
resident. A warm process that speaks texts of varied lengths (the synthesis, the mark, the
WAV: buffers of 0.1-30 MB) ratcheted that way to 1.4 GB in issue 12's text fuzz, past the speech
function's 1,024 MB. Fixing the threshold at glibc's default (``mallopt(M_MMAP_THRESHOLD)``,
which also turns the dynamic adjustment off) keeps it at ~230 MB between requests
(docs/verify-hardening.md). The same as ``MALLOC_MMAP_THRESHOLD_=131072`` in the environment,
but set by the process itself, so every entry point gets it.

Example:
    >>> release_large_buffers()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

MMAP_THRESHOLD: Final = 128 * 1024
"""Allocations from this size up are mmapped, so freeing them returns their pages (glibc's
default threshold, kept fixed)."""
_M_MMAP_THRESHOLD: Final = -3
"""glibc's ``mallopt`` parameter number for the threshold (malloc.h)."""


def release_large_buffers() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` for this process; False where the C
    library is not glibc (nothing to do: musl and others do not ratchet this way)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
