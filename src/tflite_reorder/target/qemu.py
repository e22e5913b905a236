"""Running the target runner under QEMU user mode (``qemu-arm -cpu <arch>``, semihosting).

QEMU 8.0.4 or later is needed (Debian 12's 7.2 aborts on every Cortex-M ELF). It is found
in ``TFLITE_REORDER_QEMU``, then on ``PATH`` (if new enough), then as the vendored
``qemu-arm-10.0.2.xz`` next to the repository, unpacked once into the cache.
newlib's semihosting start-up reads the command line into a 255-character buffer, so the
runner runs in a scratch folder with short relative file names.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from .tree import QEMU_NAME, TargetError, cache_dir, locked, vendor_dir

_MIN_VERSION = (8, 0, 4)
_VERSION = re.compile(r"version (\d+)\.(\d+)\.(\d+)")


def _version(binary: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    m = _VERSION.search(out.stdout)
    return tuple(int(x) for x in m.groups()) if m else None


def _unpack_vendored() -> str | None:
    packed = vendor_dir() / QEMU_NAME
    if not packed.is_file():
        return None
    dest = cache_dir() / "tools" / QEMU_NAME.removesuffix(".xz")
    with locked(dest.with_suffix(".lock")):
        if not dest.exists():
            tmp = dest.with_suffix(".tmp")
            with lzma.open(packed) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            tmp.chmod(0o755)
            tmp.rename(dest)
    return str(dest)


@lru_cache(maxsize=1)
def qemu() -> str:
    """Path of a ``qemu-arm`` that runs Cortex-M ELFs; raises TargetError if there is none."""
    env = os.environ.get("TFLITE_REORDER_QEMU")
    if env:
        if _version(env) is None:
            raise TargetError(f"TFLITE_REORDER_QEMU={env} does not run")
        return env
    on_path = shutil.which("qemu-arm")
    if on_path and (_version(on_path) or (0,)) >= _MIN_VERSION:
        return on_path
    vendored = _unpack_vendored()
    if vendored and _version(vendored) is not None:
        return vendored
    raise TargetError(
        "no qemu-arm >= 8.0.4 (Debian 12's 7.2 aborts on Cortex-M): set TFLITE_REORDER_QEMU"
    )


def run_elf(elf: Path, arch: str, args: list[str], cwd: Path,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``elf`` under ``qemu-arm -cpu arch`` in ``cwd``; arguments must be short.

    The ELF is linked into ``cwd`` as ``r.elf`` so that its cache path does not count
    against semihosting's command-line buffer.
    """
    link = cwd / "r.elf"
    if not link.exists():
        link.symlink_to(elf)
    line = " ".join(["r.elf", *args])
    if len(line) > 250:
        raise TargetError(f"runner command line too long for semihosting ({len(line)} chars)")
    try:
        return subprocess.run([qemu(), "-cpu", arch, "r.elf", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TargetError(f"the target runner timed out after {timeout:.0f} s") from exc
