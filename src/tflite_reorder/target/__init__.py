"""The target: TFLM built for a Cortex-M (CMSIS-NN or reference kernels), run under QEMU.

``build`` compiles our runner against a TFLM tree (cached per tree, architecture and kernel
set); ``measure`` and ``run`` plan and run a model on it.
"""

from .execute import (
    DEFAULT_ARCH,
    DEFAULT_KERNELS,
    Allocation,
    PlannedBuffer,
    TargetArena,
    TargetRun,
    TargetRunError,
    invoke,
    measure,
    run,
)
from .firmware import ARCHS, KERNEL_SETS, Build, build
from .tree import TargetError

__all__ = [
    "ARCHS", "DEFAULT_ARCH", "DEFAULT_KERNELS", "KERNEL_SETS", "Allocation", "Build",
    "PlannedBuffer", "TargetArena", "TargetError", "TargetRun", "TargetRunError", "build",
    "invoke", "measure", "run",
]
