"""Keep freed activation memory for reuse instead of handing it back to the OS (glibc only).

An unrolled graph allocates thousands of short-lived arrays per training step and frees
them all in backward. With glibc's defaults, arrays over 128 KiB are mmap-ed and the top
of the heap is trimmed once more than 128 KiB is free, so the next step page-faults all
that memory in again; on a small VM this cost more than the arithmetic. Raising the two
thresholds lets the next step reuse the freed memory, the effect PyTorch gets from its
caching allocator. Opt out with ``TINYSEQ_MALLOC_TUNING=0`` before importing tinyseq.
"""

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: the values set (bytes): the mmap threshold's largest allowed value, and 1 GiB of free heap kept.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024


def tune():
    """Raise glibc's mmap and trim thresholds; returns True if both were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl): leave the allocator alone
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
