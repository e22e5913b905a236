"""A fixed-seed sample of the mutation fuzzer (``tools/fuzz.py``): no crash, no hang.

Every mutated model must either come out of ``api.optimize`` / ``api.peak_memory`` as a
valid model with the same operators, or be refused with a one-line ``ModelError``. The
full run (≥ 20,000 cases) is ``python tools/fuzz.py``; see ``tools/FUZZ_RESULTS.md``.
"""

from __future__ import annotations

from tools import fuzz

SEED, CASES = 20261121, 300


def test_fuzz_sample_has_no_crash():
    tally = fuzz.run_range((SEED, list(range(CASES)), list(fuzz.DEFAULT_MODELS), 0.1, 20.0,
                            False))
    crashes = [f"case {i}: {what}\n{detail}" for i, what, detail in tally.crashes]
    assert not crashes, "\n\n".join(crashes)
    assert sum(tally.counts.values()) == CASES
    # The sample exercises both outcomes: mutations that stay valid and ones refused.
    assert tally.counts["ok"] >= CASES // 10
    assert tally.counts["rejected"] >= CASES // 3


def test_cases_replay_exactly():
    """A crash report's (seed, case) rebuilds the same bytes (``fuzz.py --only``)."""
    seeds = fuzz.Seeds.load(list(fuzz.DEFAULT_MODELS))
    for i in (0, 7, 123):
        assert fuzz.make_case(SEED, i, seeds) == fuzz.make_case(SEED, i, seeds)


def test_fuzz_levers_sample_has_no_crash():
    """A few cases with the graph levers too (``--lever-share``): ``rewrite``/``tile``."""
    tally = fuzz.run_range((SEED, list(range(12)), list(fuzz.DEFAULT_MODELS), 0.1, 60.0,
                            False, 1.0))
    crashes = [f"case {i}: {what}\n{detail}" for i, what, detail in tally.crashes]
    assert not crashes, "\n\n".join(crashes)
    assert tally.counts["with levers"] == 12
    assert {tuple(sorted(fuzz.levers_of(SEED, i, 1.0))) for i in range(12)} == {
        ("rewrite",), ("tile",), ("rewrite", "tile")}


def test_a_loop_that_does_not_end_ends_the_case_in_time():
    """Seed 2035 case 3557 (a junk constant becomes a WHILE's trip count) ran TFLM for
    600 s before every runtime run was bounded (``fuzz.RUN_TIMEOUT``); the corpus's
    endless WHILE with every lever: each ends well within the case timeout, not a crash."""
    import time

    from tflite_reorder.runtimes import run_budget
    from tools.make_bad_inputs import endless_while

    tally = fuzz.run_range((2035, [3557], list(fuzz.DEFAULT_MODELS), 0.2, 20.0, False, 0.2))
    assert not tally.crashes and tally.counts["with levers"] == 1
    t0 = time.monotonic()
    with run_budget(fuzz.RUN_TIMEOUT):
        outcome, detail = fuzz.run_case(endless_while(), 0.1, {"rewrite": True, "tile": True})
    assert (outcome, detail) == ("ok", "")
    assert time.monotonic() - t0 < fuzz.LEVER_TIMEOUT * 20.0
