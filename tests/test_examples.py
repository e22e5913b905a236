"""examples/firmware: the Makefile and CMake pre-flash steps, and main.c sized by arena.h."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from tflite_reorder import tflm
from tflite_reorder.cli import main
from tflite_reorder.runtimes import structured_inputs

EXAMPLE = ROOT / "examples" / "firmware"
MODEL = ROOT / "models" / "inception_int8.tflite"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example with a model in it and a ``tflite-reorder`` for this Python."""
    proj = tmp_path / "firmware"
    shutil.copytree(EXAMPLE, proj)
    shutil.copy(MODEL, proj / "model.tflite")
    return proj


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    """The CLI run by the interpreter under test, whatever ``tflite-reorder`` is on PATH."""
    script = tmp_path / "bin" / "tflite-reorder"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c '
                      f'"from tflite_reorder.cli import main; main()" "$@"\n')
    script.chmod(0o755)
    return script


def macros(header: Path) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"#define (\w+) (\d+)", header.read_text())}


def arena_json(capsys) -> dict:
    with pytest.raises(SystemExit) as exc:
        main(["arena", str(MODEL), "--json"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    return json.loads(out)


def check_outputs(model_opt: Path, header: Path, capsys) -> None:
    assert model_opt.is_file() and header.is_file()
    m = macros(header)
    assert {"MODEL_OPT_ARENA_HEAD", "MODEL_OPT_ARENA_TAIL", "MODEL_OPT_ARENA_SIZE"} <= set(m)
    head, size = m["MODEL_OPT_ARENA_HEAD"], m["MODEL_OPT_ARENA_SIZE"]
    assert size % 16 == 0 and size >= head + m["MODEL_OPT_ARENA_TAIL"]
    figures = arena_json(capsys)
    assert head == figures["head"]
    data = model_opt.read_bytes()
    assert head == figures["tflm_head"] == tflm.measure_arena(data).head
    # The header's promise: the optimised model runs in an arena of exactly that size.
    tflm.run_tflm(data, structured_inputs(data), arena_size=size)
    assert m["MODEL_OPT_ARENA_MIN"] <= size


@pytest.mark.tflm
@needs_gcc
@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_makefile_rule(project, tool, capsys):
    run = subprocess.run(["make", "-C", str(project), f"TFLITE_REORDER={tool}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "--header arena.h" in run.stdout and "gcc " in run.stdout
    check_outputs(project / "model_opt.tflite", project / "arena.h", capsys)
    assert (project / "main.o").is_file()  # main.c compiled against arena.h
    again = subprocess.run(["make", "-C", str(project), f"TFLITE_REORDER={tool}"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout


@needs_gcc
def test_main_c_compiles_against_the_header(project, tool):
    subprocess.run([str(tool), "model.tflite", "model_opt.tflite", "--header", "arena.h",
                    "--no-verify"], cwd=project, check=True, capture_output=True, timeout=300)
    run = subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-I.", "-c", "main.c",
                          "-o", "main.o"], cwd=project, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (project / "arena.h").write_text("/* wrong header */\n")  # and it fails without it
    run = subprocess.run(["gcc", "-I.", "-c", "main.c", "-o", "main.o"], cwd=project,
                         capture_output=True, text=True)
    assert run.returncode != 0 and "MODEL_OPT_ARENA_SIZE" in run.stderr


@pytest.mark.tflm
@needs_gcc
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_custom_command(project, tool, capsys):
    build = project / "build"
    conf = subprocess.run(["cmake", "-S", str(project), "-B", str(build),
                           f"-DTFLITE_REORDER={tool}", "-DCMAKE_C_COMPILER=gcc"],
                          capture_output=True, text=True, timeout=120)
    assert conf.returncode == 0, conf.stdout + conf.stderr
    run = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    check_outputs(build / "model_opt.tflite", build / "arena.h", capsys)
    assert list(build.rglob("main.c.o"))
