"""Building the target runner: TFLM + kernels + ``runner.cc`` for one Cortex-M, cached.

TFLM's own Makefile builds a 300-object library (tests' helpers, the signal library, …)
and takes 11–14 minutes on two loaded cores. We compile only what the runner links: the
interpreter core, every builtin kernel (the optimized directory's file replacing the
reference one of the same name, as TFLM's ``specialize_files.py`` does) and, for CMSIS-NN,
its C sources; with TFLM's own flags for ``TARGET=cortex_m_qemu`` (core ``-Os``, kernels and
third-party ``-O2``, semihosting through ``--specs=rdimon.specs``). Objects compile in
parallel; one lock per build key lets concurrent processes share one build.

The library's cache key covers the tree (sources and headers), the architecture, the
kernel set and this module's flags; the runner (``runner-<hash of runner.cc>.elf``) is
linked against it separately, so a change to the runner relinks without recompiling.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .tree import DOWNLOADS, TargetError, cache_dir, locked, resolve_tree, tree_digest

KERNEL_SETS = ("cmsis_nn", "reference")
# Architectures this runner is built and run for. Cortex-M55 uses the hard-float ABI so
# that CMSIS-NN's MVE (Helium) path is compiled in; TFLM's cortex_m_qemu target would force
# soft-float and silently take the scalar path.
ARCHS = ("cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
_HARD_FLOAT = {"cortex-m55"}
_FLAGS_VERSION = "2"

_COMMON = [
    "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-ffunction-sections",
    "-fdata-sections", "-fmessage-length=0", "-DTF_LITE_STATIC_MEMORY",
    "-DTF_LITE_DISABLE_X86_NEON", "-Wno-unused-parameter", "-DKERNELS_OPTIMIZED_FOR_SPEED",
    "-DTF_LITE_MCU_DEBUG_LOG", "-mthumb", "-mfpu=auto", "-funsigned-char", "-mlittle-endian",
    "-fomit-frame-pointer", "--specs=rdimon.specs",
]
_CXX_ONLY = ["-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-std=c++17"]
_C_ONLY = ["-std=c17"]
_CMSIS_DEFINES = ["-DCMSIS_NN", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0"]
_INCLUDE_DIRS = ("", "gemmlowp", "flatbuffers/include", "kissfft", "ruy")
_CMSIS_INCLUDE_DIRS = ("cmsis", "cmsis_nn", "cmsis/CMSIS/Core/Include", "cmsis_nn/Include")

_CORE_GLOBS = (
    "tensorflow/lite/micro/*.cc",
    "tensorflow/lite/micro/arena_allocator/*.cc",
    "tensorflow/lite/micro/memory_planner/*.cc",
    "tensorflow/lite/micro/tflite_bridge/*.cc",
    "tensorflow/lite/kernels/kernel_util.cc",
    "tensorflow/lite/kernels/internal/*.cc",
    "tensorflow/lite/kernels/internal/reference/*.cc",
    "tensorflow/lite/core/api/*.cc",
    "tensorflow/lite/core/c/common.cc",
    "tensorflow/compiler/mlir/lite/schema/schema_utils.cc",
    "tensorflow/compiler/mlir/lite/core/api/error_reporter.cc",
)
# Test scaffolding the Makefile puts into its library; the runner needs none of it.
_NOT_LINKED = {
    "test_helpers.cc", "test_helper_custom_ops.cc", "mock_micro_graph.cc",
    "fake_micro_context.cc", "kernel_runner.cc",
}
_TEST_SUFFIXES = ("_test.cc", "_test_common.cc", "_generated_data.cc")


@dataclass(frozen=True)
class Build:
    """A built runner: what it was built from and where the ELF is."""

    tree: Path
    arch: str
    kernels: str
    elf: Path
    key: str
    seconds: float  # time this process spent building it (0.0: found in the cache)
    objects: int


def toolchain() -> dict[str, str]:
    """Paths of Debian's (or any) ``arm-none-eabi`` gcc, g++ and ar."""
    tools = {}
    for name in ("gcc", "g++", "ar"):
        found = shutil.which(f"arm-none-eabi-{name}")
        if found is None:
            raise TargetError(
                f"arm-none-eabi-{name} not found: install gcc-arm-none-eabi, "
                "libnewlib-arm-none-eabi and libstdc++-arm-none-eabi-newlib"
            )
        tools[name] = found
    return tools


def _kernel_dir(kernels: str) -> str | None:
    if kernels not in KERNEL_SETS:
        raise TargetError(f"unknown kernel set {kernels!r} (one of {', '.join(KERNEL_SETS)})")
    return None if kernels == "reference" else kernels


def _tested(name: str) -> bool:
    return name.endswith(_TEST_SUFFIXES) or name in _NOT_LINKED


def library_sources(root: Path, kernels: str) -> tuple[list[Path], list[Path], list[Path]]:
    """(core, kernel, third-party C) sources relative to ``root``, as TFLM's Makefile picks."""
    core = sorted(
        p.relative_to(root)
        for pattern in _CORE_GLOBS
        for p in root.glob(pattern)
        if not _tested(p.name)
    )
    base = {p.name: p.relative_to(root)
            for p in (root / "tensorflow/lite/micro/kernels").glob("*.cc") if not _tested(p.name)}
    opt = _kernel_dir(kernels)
    third: list[Path] = []
    if opt is not None:
        for p in (root / "tensorflow/lite/micro/kernels" / opt).glob("*.cc"):
            if not _tested(p.name):
                base[p.name] = p.relative_to(root)
        source = root / DOWNLOADS / "cmsis_nn" / "Source"
        third = sorted(
            p.relative_to(root) for p in source.rglob("*.c")
            if not p.name.endswith(("_f16.c", "_f32.c")) and p.name != "arm_nntables_flt.c"
        )
    return core, sorted(base.values()), third


def arch_flags(arch: str) -> list[str]:
    if arch not in ARCHS:
        raise TargetError(f"unknown architecture {arch!r} (one of {', '.join(ARCHS)})")
    abi = "hard" if arch in _HARD_FLOAT else "soft"
    return [f"-mcpu={arch}", f"-mfloat-abi={abi}"]


def _includes(root: Path, kernels: str, gen: Path) -> list[str]:
    dirs = [root] + [root / DOWNLOADS / d for d in _INCLUDE_DIRS]
    if _kernel_dir(kernels) is not None:
        dirs += [root / DOWNLOADS / d for d in _CMSIS_INCLUDE_DIRS]
    return [f"-I{d}" for d in dirs] + [f"-I{gen}"]


def _flags(root: Path, arch: str, kernels: str, gen: Path, lang: str, opt: str) -> list[str]:
    defines = _CMSIS_DEFINES if _kernel_dir(kernels) is not None else []
    lang_flags = _CXX_ONLY if lang == "c++" else _C_ONLY
    # Paths in __FILE__ (TFLM's error messages) do not depend on where the tree lies.
    prefix = f"-ffile-prefix-map={root}=tflite-micro"
    return [*_COMMON, *lang_flags, *arch_flags(arch), *defines, opt, prefix,
            *_includes(root, kernels, gen)]


_ADD_METHOD = re.compile(r"TfLiteStatus (Add\w+)\(")


def builtin_adders(root: Path) -> list[str]:
    """Every ``MicroMutableOpResolver::AddX`` method that registers a builtin operator.

    Read from the tree's own ``micro_mutable_op_resolver.h``, so that the runner has every
    builtin this TFLM has (custom operators such as the signal library are left out).
    """
    text = (root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    found = list(_ADD_METHOD.finditer(text))
    names = []
    for i, m in enumerate(found):
        body = text[m.end(): found[i + 1].start() if i + 1 < len(found) else len(text)]
        if m.group(1) != "AddBuiltin" and "AddBuiltin(" in body:
            names.append(m.group(1))
    if not names:
        raise TargetError(f"{root}: no builtin operators found in micro_mutable_op_resolver.h")
    return names


def _ops_header(names: list[str]) -> str:
    calls = "\n".join(f"  r.{n}();" for n in names)
    return (
        "// Generated by tflite_reorder.target.firmware from micro_mutable_op_resolver.h.\n"
        "#pragma once\n"
        f"constexpr unsigned int kRunnerOpCount = {len(names)};\n"
        "template <typename R>\nvoid AddRunnerOps(R& r) {\n" + calls + "\n}\n"
    )


RUNNER_SOURCE = Path(__file__).with_name("runner.cc")


def library_key(root: Path, arch: str, kernels: str, sources: list[Path]) -> str:
    """Cache key of the compiled library: tree, architecture, kernel set and flags."""
    h = hashlib.sha256()
    for part in (tree_digest(root, sources), arch, kernels, _FLAGS_VERSION, " ".join(_COMMON)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def runner_key() -> str:
    """Cache key of the runner linked against a library: its source (and the op list)."""
    return hashlib.sha256(RUNNER_SOURCE.read_bytes()).hexdigest()[:12]


def _compile(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise TargetError(f"compiling failed: {' '.join(cmd[-3:])}\n{done.stderr[-3000:]}")


def _jobs() -> int:
    env = os.environ.get("TFLITE_REORDER_JOBS")
    return max(1, int(env)) if env else max(1, os.cpu_count() or 1)


def _compile_library(out: Path, root: Path, arch: str, kernels: str) -> int:
    """Compile and archive the library into ``out``; returns the objects compiled now."""
    tools = toolchain()
    core, kernel, third = library_sources(root, kernels)
    gen = out / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    (out / "obj").mkdir(exist_ok=True)
    jobs: list[list[str]] = []
    objects = []
    for group, lang, opt in ((core, "c++", "-Os"), (kernel, "c++", "-O2"), (third, "c", "-O2")):
        flags = _flags(root, arch, kernels, gen, lang, opt)
        compiler = tools["g++"] if lang == "c++" else tools["gcc"]
        for src in group:
            obj = out / "obj" / (str(src).replace("/", "__") + ".o")
            objects.append(obj)
            if not obj.exists():  # a build interrupted earlier resumes
                tmp = obj.with_suffix(".tmp.o")
                jobs.append([compiler, *flags, "-c", str(root / src), "-o", str(tmp)])
    with ThreadPoolExecutor(_jobs()) as pool:
        list(pool.map(_compile, jobs))
    for cmd in jobs:
        tmp = Path(cmd[-1])
        tmp.rename(str(tmp).removesuffix(".tmp.o") + ".o")
    lib = out / "libtflm.a"
    tmp_lib = out / "libtflm.tmp.a"
    tmp_lib.unlink(missing_ok=True)
    subprocess.run([tools["ar"], "rcs", str(tmp_lib), *map(str, objects)], check=True)
    tmp_lib.rename(lib)
    return len(jobs)


def _link_runner(out: Path, root: Path, arch: str, kernels: str, elf: Path) -> None:
    """Compile ``runner.cc`` with every builtin of the tree and link it to the library."""
    tools = toolchain()
    gen = out / f"gen-{elf.stem}"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / "runner_ops.h").write_text(_ops_header(builtin_adders(root)))
    cxx = _flags(root, arch, kernels, gen, "c++", "-Os")
    runner_obj = gen / "runner.o"
    _compile([tools["g++"], *cxx, "-c", str(RUNNER_SOURCE), "-o", str(runner_obj)])
    tmp = elf.with_suffix(".tmp")
    _compile([tools["g++"], *cxx, str(runner_obj), str(out / "libtflm.a"), "-Wl,--gc-sections",
              "-lm", "-o", str(tmp)])
    tmp.rename(elf)


@cache
def _cached(root: Path, arch: str, kernels: str) -> Build:
    core, kernel, third = library_sources(root, kernels)
    key = library_key(root, arch, kernels, core + kernel + third)
    out = cache_dir() / "builds" / f"{arch}-{kernels}-{key}"
    elf = out / f"runner-{runner_key()}.elf"
    started = time.monotonic()
    objects = 0
    if not elf.exists():
        with locked(out.with_suffix(".lock")):
            if not (out / "libtflm.a").exists():
                objects = _compile_library(out, root, arch, kernels)
            if not elf.exists():  # another process may have linked it meanwhile
                _link_runner(out, root, arch, kernels, elf)
    seconds = time.monotonic() - started if objects else 0.0
    return Build(root, arch, kernels, elf, key, seconds, objects)


def build(arch: str = "cortex-m4", kernels: str = "cmsis_nn",
          tflm_src: str | os.PathLike[str] | None = None) -> Build:
    """The runner for ``arch`` and ``kernels`` from the TFLM tree, built once and cached.

    Raises TargetError when the toolchain, the tree or a source is missing or a compile
    fails (with the compiler's message).
    """
    arch_flags(arch)
    _kernel_dir(kernels)
    return _cached(resolve_tree(tflm_src), arch, kernels)
