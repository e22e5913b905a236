"""What the API returns and raises: reports, results, errors and their exit codes.

Plain data only (no computation beyond derived figures), so that every layer (the API, the
CLI, batch, the report writers) can import it without importing the pipeline. The one
exception → exit-code mapping (:func:`classify`) is shared by the CLI and batch mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .flatbuffer_io import ModelError, Terminated

if TYPE_CHECKING:  # annotations only: results stay importable without the planners
    from .arena import Plan
    from .memory import ArenaUse

# Exit codes of the command line (and the ``exit_code`` of batch rows).
EXIT_OK = 0
EXIT_VERIFY = 1  # verification failed (nothing written); ``check``: hazards found
EXIT_INPUT = 2  # bad input or usage; a verification that could not run (``NotVerified``)
EXIT_INTERNAL = 3  # a bug of ours
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_TERMINATED = 143  # SIGTERM (128 + 15), handled like Ctrl-C
KIND_EXIT = {"verification": EXIT_VERIFY, "input": EXIT_INPUT, "internal": EXIT_INTERNAL,
             "interrupted": EXIT_INTERRUPTED, "terminated": EXIT_TERMINATED,
             "budget": EXIT_VERIFY, "timeout": EXIT_INPUT}


@dataclass
class SubgraphReport:
    """One subgraph's figures: stored-order peak, best peak found, and its certificate."""

    index: int
    name: str
    ops: int
    peak_before: int
    peak_after: int
    lower_bound: int
    optimal: bool
    states: int
    seconds: float
    stopped: str = ""


@dataclass
class Report:
    """What one run did and measured; ``to_dict`` is the CLI's ``--json``."""

    input: str
    output: str | None = None
    ops: int = 0
    subgraphs: int = 0
    peak_input: int = 0  # the input as it is: stored order, true sizes, no sharing
    peak_before: int = 0  # stored order after repairs (the safe input), no sharing
    peak_after: int = 0  # our order (and in-place sharing when enabled)
    peak_after_no_inplace: int = 0
    lower_bound: int = 0
    optimal: bool = False
    arena_planned: int | None = None  # head of the offline plan written into the model
    plan_method: str | None = None
    plan_optimal: bool | None = None
    plan_clock_cut: bool | None = None  # a loaded machine's wall clock cut the planning short
    tflm_greedy_head: int | None = None  # TFLM's own planner on our order, for comparison
    tflm_head: int | None = None  # TFLM's measured head of the output (== arena_planned)
    kept_stored_order: bool = False  # the stored order (of some subgraph) needed less
    inplace: bool = True
    shape_fixes: list[dict] = field(default_factory=list)  # hazards found in the input
    repairs: list[dict] = field(default_factory=list)  # ops inserted to make TFLM safe
    rewrites: list[dict] = field(default_factory=list)  # applied (numerics may change)
    rewrites_rejected: list[dict] = field(default_factory=list)
    rewrite_error: dict | None = None  # rewritten model vs input, measured on random inputs
    peak_without_rewrites: int | None = None  # optimal-order peak before rewriting
    tflm_compat: dict | None = None  # --tflm-compat: constants folded, flash and arena cost
    verification: dict | None = None
    seconds: float = 0.0
    schedule_seconds: float = 0.0
    # shapes, rewrites, scheduling and planning: what --time-limit bounds (the rest is
    # reading, writing and verifying); with --rewrite within 1.5 x the limit
    search_seconds: float = 0.0
    rewrite_seconds: float = 0.0  # the rewrite search, its error checks included
    rewrite_out_of_time: bool = False  # the time limit stopped the rewrite search early
    per_subgraph: list[SubgraphReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # With a target build: its measured head/tail/total and whether it verified (see
    # target.pipeline.TargetReport); None without --target.
    target: dict | None = None
    # patch-based execution (``tile``): per region ops, grid, tiles, halo, bytes saved, …
    tiles: list[dict] | None = None
    macs_before: int | None = None
    macs_after: int | None = None
    tflm_before: dict | None = None  # {"head", "tail", "total", "source"}: the input
    tflm_after: dict | None = None  # the written model
    tflm_untiled: dict | None = None  # with --tile: the same run untiled (never beaten by it)
    ram_budget: int | None = None

    @property
    def ratio(self) -> float:
        return self.peak_before / self.peak_after if self.peak_after else 1.0

    @property
    def gap(self) -> int:
        return self.peak_after - self.lower_bound

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = round(self.ratio, 4)
        d["gap"] = self.gap
        return d


@dataclass
class Optimized:
    """``optimize``'s answer: the bytes to write, the report, and what produced them."""

    data: bytes
    report: Report
    orders: list[list[int]]
    plan: Plan | None = None
    use: ArenaUse | None = None


@dataclass
class PeakMemory:
    """``peak_memory``'s answer, in bytes of TFLM arena (activations only)."""

    stored: int  # the model's own operator order
    optimal: int  # the best order (proven minimal when ``is_optimal``)
    lower_bound: int
    is_optimal: bool
    seconds: float


@dataclass
class OpRow:
    """One operator of ``inspect_order``'s table, in execution order."""

    position: int
    index: int  # the op's index in the input model
    opcode: str
    shapes: str
    live: int
    subgraph: int


@dataclass
class Inspection:
    """``inspect_order``'s answer: every operator with the bytes live at its scope."""

    input: str
    order: str  # "stored" or "optimal"
    peak: int
    rows: list[OpRow]

    def to_dict(self) -> dict:
        return {"input": self.input, "order": self.order, "peak": self.peak,
                "ops": [asdict(r) for r in self.rows]}


class VerificationError(Exception):
    """The written model's outputs differ from the input's; nothing should be written."""

    def __init__(self, report: Report, reason: str | None = None) -> None:
        if reason is None:
            checked = report.verification["comparisons"] if report.verification else []
            bad = [c for c in checked if not c["within_tolerance"]]
            reason = ", ".join(f"{c['runtime']} max diff {c['max_abs_diff']:g}" for c in bad)
            if report.target and report.target.get("verified") is False:
                t = report.target
                reason = ", ".join(filter(None, [reason, f"outputs differ on {t['arch']} "
                                                         f"({t['kernels']}) under QEMU"]))
        super().__init__(f"{report.input}: verification failed ({reason})")
        self.report = report


class NotVerified(ModelError):
    """A runtime did not finish within ``--verify-timeout`` (``runtimes.RuntimeTimeout``),
    so the check it ran did not run and nothing is written: like "no runtime runs this
    model", a verification that could not run (exit 2, kind ``"timeout"``). ``report``
    (None before the search) holds ``verification``, its ``timed_out`` runtimes named."""

    def __init__(self, message: str, report: Report | None = None) -> None:
        super().__init__(f"{message}; raise --verify-timeout or use --no-verify")
        self.report = report


class BudgetError(Exception):
    """No tiling brings the TFLM arena (head + tail) within ``--ram-budget``."""

    def __init__(self, report: Report, best: int) -> None:
        super().__init__(f"{report.input}: no configuration fits the RAM budget of "
                         f"{report.ram_budget} B; the best reached is {best} B "
                         f"(head + tail)")
        self.report, self.best = report, best


@dataclass(frozen=True)
class Failure:
    """How a run that raised ends: ``kind`` (a batch row's ``error_kind``) and exit code.

    ``message`` is one line without the file name of internal errors (callers add where).
    """

    kind: str  # "input", "timeout", "verification", "budget", "internal" or "interrupted"
    exit_code: int
    message: str


def classify(exc: BaseException) -> Failure:
    """The documented exit code of an exception: the CLI's and batch mode's one mapping.

    ``ModelError`` is bad input (2), and so is ``NotVerified`` (a runtime timed out: the
    verification could not run), ``VerificationError`` a failed check (1), so is
    ``BudgetError`` (nothing fits ``--ram-budget``),
    ``KeyboardInterrupt`` 130 (SIGTERM 143), anything else (``MemoryError`` included) our bug (3).
    """
    if isinstance(exc, NotVerified):
        kind, message = "timeout", f"{exc}; nothing written"
    elif isinstance(exc, ModelError):
        kind, message = "input", str(exc)
    elif isinstance(exc, VerificationError):
        kind, message = "verification", f"{exc}; nothing written"
    elif isinstance(exc, BudgetError):
        kind, message = "budget", f"{exc}; nothing written"
    elif isinstance(exc, Terminated):
        kind, message = "terminated", "terminated; nothing written"
    elif isinstance(exc, KeyboardInterrupt):
        kind, message = "interrupted", "interrupted; nothing written"
    elif isinstance(exc, MemoryError):
        kind, message = "internal", "out of memory"
    else:
        kind, message = "internal", f"internal error: {type(exc).__name__}: {exc}"
    return Failure(kind, KIND_EXIT[kind], message)
