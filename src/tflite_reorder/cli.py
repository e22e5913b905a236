"""Command line: ``tflite-reorder IN OUT`` and the ``inspect``/``arena``/``check`` tools.

Exit codes: 0 done; 1 verification failed (nothing written) or, for ``check``, hazards
found; 2 bad input or usage; 3 internal error. Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .flatbuffer_io import (
    ModelError,
    check_output_path,
    sigterm_as_interrupt,
    write_atomic,
)
from .results import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_VERIFY,
    classify,
)
from .runtimes import RUN_TIMEOUT
from .version import __version__

# click's UsageError (typer vendors click in recent versions: found through its subclass).
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
COMMANDS = ("optimize", "inspect", "arena", "check", "batch")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Memory-optimal operator order and arena plan for TensorFlow Lite Micro models.\n\n"
    "The main job is `tflite-reorder IN.tflite OUT.tflite` (the `optimize` command).",
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        print(f"tflite-reorder {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def _fail(code: int, message: str) -> typer.Exit:
    # Runtimes' messages can span lines; the error stays one line.
    message = " | ".join(line.strip() for line in message.splitlines() if line.strip())
    err.print(f"tflite-reorder: error: {message}", highlight=False, markup=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _errors(*paths: Path | None) -> Iterator[None]:
    """Turn every failure into one line and a documented exit code.

    Errors found past reading (graph checks) do not name the file: a message that starts
    with none of ``paths`` gets the first (the input) in front.
    """
    try:
        yield
    except typer.Exit:
        raise
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stays open until exit)
        raise typer.Exit(EXIT_OK) from None
    except (Exception, KeyboardInterrupt) as exc:  # a bug of ours too: one line, no traceback
        failure = classify(exc)
        msg = failure.message
        names = [str(p) for p in paths if p is not None]
        if failure.kind != "interrupted" and names and not any(msg.startswith(n) for n in names):
            msg = f"{names[0]}: {msg}"  # every error names the file, internal ones too
        if isinstance(exc, MemoryError):
            msg += "; try a smaller --time-limit"
        raise _fail(failure.exit_code, msg) from None


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable | None]:
    """A rich progress line for long searches; silent when not on a terminal."""
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("searching", total=None)

        def update(states: int, best: int, bound: int) -> None:
            bar.update(task, description=f"searching: {states} states, best {best} B, "
                                         f"bound {bound} B")

        yield update


def _check_paths(src: Path, dst: Path | None, *extra: Path | None) -> None:
    """Every path and dependency checked before any work: a bad output path or a missing
    plotting library must fail before anything is computed or written.

    ``extra`` are further outputs (``--header``, ``--plot``); none may be the input or the
    model output, and a ``--plot`` needs matplotlib.
    """
    if not src.exists():
        raise ModelError(f"{src}: no such file")
    if src.is_dir():
        raise ModelError(f"{src}: is a directory, not a .tflite file")
    outputs = [p for p in (dst, *extra) if p is not None]
    for i, path in enumerate(outputs):
        if path.exists() and path.resolve() == src.resolve():
            raise ModelError(f"{path}: output path is the input file; refusing to overwrite it")
        if any(_same_path(path, q) for q in outputs[:i]):
            raise ModelError(f"{path}: given as two different outputs")
        check_output_path(path)


def _same_path(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _check_plot(plot: Path | None) -> None:
    if plot is None:
        return
    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise ModelError(f"{plot}: plot file must end in {', '.join(PLOT_SUFFIXES)}")
    if importlib.util.find_spec("matplotlib") is None:
        raise ModelError(f"{plot}: plotting needs matplotlib (pip install "
                         f"'tflite-reorder[plot]')")


def _finite(value: float | None) -> float | None:
    """Option callback: inf and nan pass click's range checks but are no usable number."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _seconds(value: float) -> float:
    """Option callback: a finite number of seconds above 0."""
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a finite number of seconds above 0")
    return value


Json = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
TargetArch = Annotated[str | None, typer.Option(
    "--target", metavar="ARCH", help="Also plan for and run on TFLM built for this Cortex-M "
    "(cortex-m4, cortex-m7, cortex-m55, …) under QEMU.")]
Kernels = Annotated[str, typer.Option(help="Target kernel set: cmsis_nn or reference.")]
class TileObjective(str, Enum):
    """What ``--tile`` minimises (``api.optimize``'s ``tile_objective``)."""

    total = "total"
    head = "head"


TflmSrc = Annotated[Path | None, typer.Option(
    "--tflm-src", help="TFLM source tree (or .tar.xz bundle) to build the target from.")]


def _target(arch: str | None, kernels: str, tflm_src: Path | None):
    """The target build asked for, or None; bad names are bad input (exit 2)."""
    if arch is None:
        return None
    from .flatbuffer_io import ModelError
    from .target.pipeline import Target

    try:
        return Target(arch, kernels, tflm_src)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
VerifyTimeout = Annotated[float, typer.Option(
    "--verify-timeout", callback=_seconds, metavar="SECONDS",
    help="Seconds one run of a model in LiteRT or TFLM may take (verification, rewrite error "
    "measurement, TFLM's figures); a run cut short is a check not run, never a pass.")]
TimeLimit = Annotated[float, typer.Option(
    "--time-limit", min=0.0, callback=_finite, help="Seconds for the exact search; then the "
    "best order found is used and the gap reported.")]


@app.command()
def optimize(
    src: Annotated[Path, typer.Argument(help="Input .tflite model (never modified).")],
    dst: Annotated[Path, typer.Argument(help="Output .tflite model (written atomically).")],
    json_out: Json = False,
    time_limit: TimeLimit = 10.0,
    verify: Annotated[bool, typer.Option(help="Run the written model against the input "
                                         "(LiteRT reference kernels, and TFLM).")] = True,
    verify_timeout: VerifyTimeout = RUN_TIMEOUT,
    inplace: Annotated[bool, typer.Option(help="Let outputs of elementwise/reshape ops take "
                                          "the buffer of an input that dies there.")] = True,
    plan: Annotated[bool, typer.Option(help="Write an offline arena plan "
                                       "(OfflineMemoryAllocation metadata).")] = True,
    fix_shapes: Annotated[bool, typer.Option(help="Write the true shapes of tensors whose "
                                             "stored shape is smaller than what kernels "
                                             "write.")] = True,
    rewrite: Annotated[bool, typer.Option(help="Apply graph rewrites (numerics may "
                                          "change).")] = False,
    max_error: Annotated[float, typer.Option(min=0.0, callback=_finite, help="Largest output "
                                             "error a rewrite may cause, in int8 LSBs.")]
    = 2.0,
    tflm_compat: Annotated[bool, typer.Option("--tflm-compat", help="Fold DEQUANTIZE of "
                                              "float16 weights and DENSIFY of sparse weights "
                                              "into float32/dense constants (TFLM runs "
                                              "neither; costs flash).")] = False,
    calibration: Annotated[Path | None, typer.Option(help="Representative inputs (.npz, one "
                                                     "array per model input, samples "
                                                     "first) for int8 partial-sum ranges "
                                                     "and error checks (with --rewrite).")]
    = None,
    tile: Annotated[bool, typer.Option(help="Run the high-resolution regions that set the "
                                       "peak tile by tile (bit-exact; adds MACs and ops).")
                    ] = False,
    ram_budget: Annotated[int | None, typer.Option(
        min=1, metavar="BYTES", help="Tile (implies --tile) with the fewest extra MACs "
        "whose TFLM arena, head + tail, fits; exit 1 and write nothing if none does.")
    ] = None,
    tile_objective: Annotated[TileObjective, typer.Option(
        help="What tiling minimises: the TFLM total (head + tail) or the head; with "
        "--ram-budget, 'head' is the smallest head whose total fits.")] = TileObjective.total,
    plot: Annotated[Path | None, typer.Option(help="Write a memory plot (.png or .svg).")] = None,
    header: Annotated[Path | None, typer.Option(help="Write a C header with the arena "
                                                "size.")] = None,
    margin: Annotated[float, typer.Option(min=0.0, help="Extra fraction added to the header's "
                                          "arena size (0.1 = 10%).")] = 0.0,
    target: TargetArch = None,
    kernels: Kernels = "cmsis_nn",
    tflm_src: TflmSrc = None,
) -> None:
    """Reorder operators for the minimum peak arena, plan the arena, verify, write."""
    from . import api
    from . import report as rep

    with _errors(src, dst, header, plot, calibration):
        _check_paths(src, dst, header, plot)
        _check_plot(plot)
        if calibration is not None and not calibration.is_file():
            raise ModelError(f"{calibration}: no such file (--calibration)")
        with _progress(not json_out) as progress:
            result = api.optimize(src, inplace=inplace, plan=plan, fix_shapes=fix_shapes,
                                  rewrite=rewrite, max_error=max_error,
                                  tflm_compat=tflm_compat, calibration=calibration,
                                  time_limit=time_limit,
                                  verify=verify, progress=progress, output_name=str(dst),
                                  tile=tile, ram_budget=ram_budget,
                                  tile_objective=tile_objective.value,
                                  target=_target(target, kernels, tflm_src),
                                  verify_timeout=verify_timeout)
        figures = api.arena_figures(src, result, measure=True,
                                    verify_timeout=verify_timeout) if header else None
        write_atomic(dst, result.data)
        r = result.report
        if header:
            write_atomic(header, rep.c_header(str(dst), str(src), figures, margin).encode())
        if plot:
            api.plot_memory(plot, src, result)
        if json_out:
            print(json.dumps(r.to_dict()))
        else:
            rep.print_lines(rep.summary_lines(r), out)


@app.command()
def inspect(
    src: Annotated[Path, typer.Argument(help="Input .tflite model.")],
    optimal: Annotated[bool, typer.Option("--optimal", help="Show the optimised order "
                                          "instead of the stored one.")] = False,
    inplace: Annotated[bool, typer.Option(help="Count in-place sharing (with --optimal).")]
    = False,
    json_out: Json = False,
    time_limit: TimeLimit = 10.0,
    tile: Annotated[bool, typer.Option(help="Show the model as --tile tiles it.")] = False,
) -> None:
    """Per-operator table: position, op, output shape, live bytes, the peak marked."""
    from . import report as rep
    from .api import inspect_order

    with _errors(src):
        _check_paths(src, None)
        seen = inspect_order(src, optimal=optimal, inplace=inplace, time_limit=time_limit,
                             tile=tile)
        if json_out:
            print(json.dumps(seen.to_dict()))
        else:
            title = f"{src.name}{' tiled' if tile else ''}: " \
                    f"{'optimised' if optimal else 'stored'} order, peak {seen.peak} B"
            out.print(rep.op_table(seen.rows, title))


@app.command()
def arena(
    src: Annotated[Path, typer.Argument(help="Input .tflite model.")],
    json_out: Json = False,
    header: Annotated[Path | None, typer.Option(help="Write a C header with the arena size.")]
    = None,
    margin: Annotated[float, typer.Option(min=0.0, callback=_finite, help="Extra fraction "
                                          "added to the header's arena size (0.1 = 10%).")]
    = 0.0,
    plot: Annotated[Path | None, typer.Option(help="Write a memory plot (.png or .svg).")] = None,
    inplace: Annotated[bool, typer.Option(help="Allow in-place sharing in the plan.")] = True,
    time_limit: TimeLimit = 10.0,
    measure: Annotated[bool, typer.Option(help="Measure with TFLM when tflite-micro is "
                                          "installed (and bisect the smallest arena).")] = True,
    verify_timeout: VerifyTimeout = RUN_TIMEOUT,
    target: TargetArch = None,
    kernels: Kernels = "cmsis_nn",
    tflm_src: TflmSrc = None,
) -> None:
    """Arena figures for firmware: planned head, lower bound, what TFLM reports."""
    from . import api
    from . import report as rep

    with _errors(src, header, plot):
        _check_paths(src, None, header, plot)
        _check_plot(plot)
        result = api.optimize(src, inplace=inplace, time_limit=time_limit, verify=False,
                              target=_target(target, kernels, tflm_src))
        figures = api.arena_figures(src, result, measure=measure,
                                    verify_timeout=verify_timeout)
        if header:
            write_atomic(header, rep.c_header(str(src), str(src), figures, margin).encode())
        if plot:
            api.plot_memory(plot, src, result)
        if json_out:
            print(json.dumps(figures))
        else:
            for k, v in figures.items():
                out.print(f"{k:30s} {v}", highlight=False, markup=False)


@app.command()
def check(
    src: Annotated[Path, typer.Argument(help="Input .tflite model.")],
    json_out: Json = False,
    verify_timeout: VerifyTimeout = RUN_TIMEOUT,
    target: TargetArch = None,
    kernels: Kernels = "cmsis_nn",
    tflm_src: TflmSrc = None,
) -> None:
    """List TFLM hazards: memory (stored shapes smaller than what kernels write, ...), ops
    whose shapes could not be checked, and whether this TFLM build runs the model.

    With --target, also plan the model on that build under QEMU and print its arena.
    Exit 0 when clean (fully checked and runnable), 1 when anything was found, 2 on bad input.
    """
    from dataclasses import asdict

    from .api import check_model, target_figures
    from .hazards import describe

    with _errors(src):
        _check_paths(src, None)
        hazards = check_model(src, verify_timeout)
        build = _target(target, kernels, tflm_src)
        on_target = target_figures(src, build) if build else None
        if json_out:
            found = {"input": str(src), "hazards": [asdict(h) for h in hazards]}
            print(json.dumps(found | ({"target": on_target} if on_target else {})))
        else:
            if not hazards:
                out.print(f"{src}: no hazards found", highlight=False)
            for line in describe(hazards):
                out.print(line, highlight=False, markup=False)
            if on_target:
                out.print(f"{src}: on {build.arch} ({build.kernels}): head {on_target['head']} B, "
                          f"tail {on_target['tail']} B, total {on_target['total']} B",
                          highlight=False, markup=False)
    if hazards:
        raise typer.Exit(EXIT_VERIFY)


@app.command()
def batch(
    inputs: Annotated[list[str], typer.Argument(help="Directories (their *.tflite), glob "
                                                "patterns or .tflite files.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for OUT/<name>.tflite "
                                          "(created if missing).")],
    jobs: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: all "
                                             "cores).")] = None,
    time_limit: TimeLimit = 10.0,
    verify: Annotated[bool, typer.Option(help="Verify every written model.")] = True,
    verify_timeout: VerifyTimeout = RUN_TIMEOUT,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line per model.")] = False,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", metavar="ADDRESS", help="Run on a Dask cluster (scheduler address, e.g. "
        "tcp://host:8786); needs the [cluster] extra.")] = None,
) -> None:
    """Optimise many models in parallel; a failing model never stops the others."""
    from .batch import run_command

    with _errors():
        code = run_command(inputs, out_dir, jobs=jobs, time_limit=time_limit, verify=verify,
                           verify_timeout=verify_timeout, json_out=json_out, cluster=cluster,
                           console=out,
                           report_error=lambda m: err.print(f"tflite-reorder: error: {m}",
                                                            highlight=False, markup=False))
    if code:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: a first argument that is no command means ``optimize``.

    Usage errors are one line and exit 2 like every other error (click's framed usage box
    is for nobody's log file); SIGTERM is handled like Ctrl-C.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version"):
        args.insert(0, "optimize")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with sigterm_as_interrupt():
            code = app(args=args, prog_name="tflite-reorder", standalone_mode=False)
    except _USAGE_ERROR as exc:
        raise _usage_error(exc) from None
    except (typer.Abort, KeyboardInterrupt) as exc:  # outside a command's own handler
        failure = classify(exc if isinstance(exc, KeyboardInterrupt) else KeyboardInterrupt())
        _fail(failure.exit_code, failure.kind)
        sys.exit(failure.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _usage_error(exc) -> SystemExit:
    where = exc.ctx.command_path if exc.ctx is not None else "tflite-reorder"
    _fail(EXIT_INPUT, f"{exc.format_message()} (see '{where} --help')")
    return SystemExit(EXIT_INPUT)
