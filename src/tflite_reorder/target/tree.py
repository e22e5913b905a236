"""Where the TFLM source tree, the cache and the vendored tools are.

The tree is the user's own (``--tflm-src DIR``: the TFLM they flash, with its third-party
downloads in ``tensorflow/lite/micro/tools/make/downloads``) or a source bundle
(``.tar.xz`` whose top folder holds ``tflite-micro/``), unpacked once into the cache. When
neither is given, ``TFLITE_REORDER_TFLM_SRC`` (a folder or a bundle) is used, then a bundle
next to the repository (``../shared/vendor/tflm-cortexm-src.tar.xz``). The cache lives in
``TFLITE_REORDER_CACHE`` or the user cache folder (``$XDG_CACHE_HOME/tflite-reorder``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")
BUNDLE_NAME = "tflm-cortexm-src.tar.xz"
QEMU_NAME = "qemu-arm-10.0.2.xz"


class TargetError(RuntimeError):
    """The target cannot be built or run here (missing toolchain, tree or QEMU)."""


def cache_dir() -> Path:
    """The folder for unpacked trees, builds and tools (created on demand)."""
    env = os.environ.get("TFLITE_REORDER_CACHE")
    if env:
        root = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "tflite-reorder"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive file lock (shared by every process and pytest-xdist worker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def vendor_dir() -> Path:
    """``TFLITE_REORDER_VENDOR``, else ``../shared/vendor`` next to the repository.

    Every ancestor of the repository is tried (a git worktree may sit deeper than the
    repository it belongs to); the nearest ``shared/vendor`` wins.
    """
    env = os.environ.get("TFLITE_REORDER_VENDOR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    for parent in repo.parents:
        if (parent / "shared" / "vendor").is_dir():
            return parent / "shared" / "vendor"
    return repo.parent / "shared" / "vendor"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unpack_bundle(bundle: Path) -> Path:
    """Unpack a source bundle into the cache once; returns its ``tflite-micro`` folder."""
    digest = file_digest(bundle)[:16]
    dest = cache_dir() / "trees" / digest
    done = dest / ".unpacked"
    with locked(cache_dir() / "trees" / f"{digest}.lock"):
        if not done.exists():
            partial = dest.with_name(digest + ".partial")
            if partial.exists():
                import shutil

                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            with tarfile.open(bundle) as tar:
                tar.extractall(partial, filter="data")
            if dest.exists():
                import shutil

                shutil.rmtree(dest)
            partial.rename(dest)
            done.write_text(str(bundle))
    found = sorted(dest.glob("*/tflite-micro")) + sorted(dest.glob("tflite-micro"))
    if not found:
        raise TargetError(f"{bundle}: no tflite-micro folder in the bundle")
    return found[0]


def _check_tree(root: Path) -> Path:
    if not (root / "tensorflow/lite/micro/micro_interpreter.h").is_file():
        raise TargetError(f"{root}: not a TFLM source tree (no tensorflow/lite/micro)")
    if not (root / DOWNLOADS / "flatbuffers/include").is_dir():
        raise TargetError(
            f"{root}: TFLM's third-party downloads are missing ({DOWNLOADS}/flatbuffers); "
            "run TFLM's Makefile once to fetch them"
        )
    return root


def resolve_tree(tflm_src: str | os.PathLike[str] | None = None) -> Path:
    """The TFLM tree to build: the given folder or bundle, the env var, or the vendored one."""
    chosen = tflm_src or os.environ.get("TFLITE_REORDER_TFLM_SRC")
    if chosen:
        path = Path(chosen).expanduser().resolve()
        if path.is_file():
            return _check_tree(_unpack_bundle(path))
        if (path / "tflite-micro").is_dir():
            path = path / "tflite-micro"
        return _check_tree(path)
    bundle = vendor_dir() / BUNDLE_NAME
    if bundle.is_file():
        return _check_tree(_unpack_bundle(bundle))
    raise TargetError(
        "no TFLM source tree: pass --tflm-src DIR or set TFLITE_REORDER_TFLM_SRC"
    )


def tree_digest(root: Path, files: list[Path]) -> str:
    """Identity of a tree's content for the build cache (not of where it lies).

    Content hashes of the listed sources plus the relative path, size and mtime of every
    header under the tree: a changed header changes the key without reading all of them.
    """
    h = hashlib.sha256()
    for f in files:
        h.update(str(f).encode())
        h.update(file_digest(root / f).encode())
    for dirpath, _dirs, names in sorted(os.walk(root)):
        rel = os.path.relpath(dirpath, root)
        for name in sorted(names):
            if name.endswith((".h", ".hpp", ".inc")):
                st = os.stat(os.path.join(dirpath, name))
                h.update(f"{rel}/{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]
