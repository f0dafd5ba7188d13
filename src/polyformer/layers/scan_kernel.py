"""Mamba's compiled CPU kernels (``csrc/selective_scan.cpp``), built on first use.

The selective scan of :mod:`polyformer.layers.ssm` run one position at a time with the state
[block of channels, d_state] held in cache, the channel loop vectorised (exp included), runs of
channel blocks in parallel on torch's thread pool, fused with Δ's projection, bias and softplus, the
D skip and the SiLU gate; and the causal depthwise convolution with its bias and SiLU. The scan's
backward recomputes the states from those saved at every ``q_len``-th position and runs the adjoint
recurrence in reverse (the equations are in ``ssm._ChunkedScan``). The same arithmetic as
``selective_scan_ref``, in one pass over memory instead of the chunked scan's several.

Building needs a C++ compiler (and ninja, a dependency) and takes about 30 s, once per machine and
source version: the library is cached in ``$TORCH_EXTENSIONS_DIR/polyformer`` (by default
``~/.cache/torch_extensions/polyformer``). Where it cannot be built, the mixer falls back to the
pure-PyTorch scan and convolution with one warning; ``POLYFORMER_SCAN_KERNEL=0`` turns the kernels
off without one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "selective_scan.cpp"
_ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
_lock = threading.Lock()
_module = None
_error: str | None = None


def enabled() -> bool:
    """False when ``POLYFORMER_SCAN_KERNEL`` is 0, false, no or off."""
    return os.environ.get("POLYFORMER_SCAN_KERNEL", "1").strip().lower() not in ("0", "false", "no", "off")


def _build_settings() -> tuple[str, list[str]]:
    isa = torch.backends.cpu.get_cpu_capability()
    # -ffast-math on the compile only (vector exp from glibc's libmvec); linking with it would load
    # crtfastmath and flush denormals for the whole process.
    cflags = ["-O3", "-ffast-math", "-fopenmp", *_ISA_FLAGS.get(isa, [])]
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(cflags).encode()).hexdigest()[:10]
    return f"polyformer_scan_{isa.lower()}_{digest}", cflags


def _build_directory(name: str) -> Path:
    """Where the library is built and cached: TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions)
    / polyformer / name."""
    base = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    path = Path(base) / "polyformer" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clear_stale_lock(build_dir: Path, older_than_s: float = 600.0) -> None:
    """torch's build lock outlives a killed build and would make every later build wait forever."""
    lock = build_dir / "lock"
    try:
        if time.time() - lock.stat().st_mtime > older_than_s:
            lock.unlink()
    except FileNotFoundError:
        pass


def find_ninja() -> str | None:
    """The ninja that builds the kernels: on PATH, or the pip-installed one next to this interpreter
    (not on PATH when a virtual environment is used without being activated)."""
    return shutil.which("ninja") or shutil.which("ninja", path=str(Path(sys.executable).parent))


def _put_ninja_on_path() -> None:
    """torch runs ``ninja`` from PATH."""
    ninja = find_ninja()
    if ninja is not None and shutil.which("ninja") is None:
        os.environ["PATH"] = str(Path(ninja).parent) + os.pathsep + os.environ.get("PATH", "")


def load(verbose: bool = False):
    """The compiled module (building it if needed), or None when it is disabled or cannot be built;
    the reason is then in :func:`error`."""
    global _module, _error
    if _module is not None or _error is not None:
        return _module
    if not enabled():
        return None
    with _lock:
        if _module is not None or _error is not None:
            return _module
        try:
            from torch.utils import cpp_extension

            _put_ninja_on_path()
            name, cflags = _build_settings()
            build_dir = _build_directory(name)
            _clear_stale_lock(build_dir)
            if not (build_dir / f"{name}.so").exists():
                print("polyformer: compiling the CPU selective-scan kernel (once, ~30 s)...", file=sys.stderr)
            _module = cpp_extension.load(
                name=name,
                sources=[str(SOURCE)],
                extra_cflags=cflags,
                extra_ldflags=["-fopenmp", "-lmvec"],
                build_directory=str(build_dir),
                verbose=verbose,
            )
        except Exception as exc:  # no compiler, no ninja, a failed build: the pure-PyTorch scan serves
            _error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            warnings.warn(
                f"polyformer: the compiled selective-scan kernel is unavailable ({_error}); using the "
                "pure-PyTorch scan (the build log: python -c 'from polyformer.layers import scan_kernel; "
                "scan_kernel.load(verbose=True)'; POLYFORMER_SCAN_KERNEL=0 silences this)",
                RuntimeWarning,
                stacklevel=2,
            )
    return _module


def available() -> bool:
    """Whether the compiled scan can be used (builds it on first call)."""
    return load() is not None


def error() -> str | None:
    """Why the kernel is unavailable, after a failed :func:`load`."""
    return _error
