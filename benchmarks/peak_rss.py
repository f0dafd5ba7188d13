"""Peak resident-set growth of one call, sampled by a thread every millisecond (Linux /proc).

The process-lifetime maximum (``ru_maxrss``) is no use for this: loading a model or a warm-up can set
a higher peak than the call being measured."""

from __future__ import annotations

import resource
import threading
import time


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_growth_mib(fn) -> float:
    """Run ``fn()``; return the highest resident set seen during it minus the one before, in MiB."""
    base = peak = rss_bytes()
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return (max(peak, rss_bytes()) - base) / 2**20
