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
