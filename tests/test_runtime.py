import platform
import subprocess
import sys

import pytest

SCRIPT = """
import torch
from polyformer.runtime import retain_freed_memory
print(retain_freed_memory(), retain_freed_memory())
x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB: above glibc's default mmap ceiling
assert float(x.sum()) == x.numel()
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_retain_freed_memory_applies_once_on_glibc():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
