"""Anytime orders (improve.py): beam starts and window re-solves give valid orders whose
reported maximum step is their true one, never worse than the order they start from; an
unbounded beam is the exact optimum (checked against brute force)."""

from __future__ import annotations

import random
import time

from exhaustive import optimum
from randgraphs import random_order, random_problems

from tflite_reorder.improve import beam_improve, beam_order, improve_order
from tflite_reorder.memory import initial_live, peak, resident_after_inputs, step_costs
from tflite_reorder.reductions import canonical
from tflite_reorder.scheduler import _context, _mstep, _step, ctx_macros, search


def _step_of(ctx):
    return _mstep if ctx.source else _step


def test_unbounded_beam_is_the_optimum():
    """Keeping every state of a layer (one per downset, at its least peak) is the exact
    bottleneck-path recursion over the macros: the brute-force optimum."""
    rng = random.Random(61)
    for case, (sg, p) in enumerate(random_problems(rng, 250, (2, 9), source_share=0.3)):
        ctx = _context(p)
        full = (1 << p.n_ops) - 1
        order, worst = beam_order(ctx, 0, full, resident_after_inputs(p), 10**9,
                                  float("inf"), _step_of(ctx))
        assert sg.is_topological(order), case
        assert max(worst, initial_live(p)) == peak(p, order) == optimum(p), case


def test_narrow_beams_are_valid_and_report_their_peak():
    rng = random.Random(62)
    for case, (sg, p) in enumerate(random_problems(rng, 100, (10, 40), source_share=0.2)):
        ctx = _context(p)
        full = (1 << p.n_ops) - 1
        mem = resident_after_inputs(p)
        for width in (1, 4, 32):
            order, worst = beam_order(ctx, 0, full, mem, width, float("inf"), _step_of(ctx))
            assert sg.is_topological(order), case
            assert max(worst, initial_live(p)) == peak(p, order), case
        stored = canonical(ctx_macros(ctx), random_order(rng, p))
        got, w = beam_improve(ctx, 0, full, mem, stored, max(step_costs(p, stored)), 0,
                              time.monotonic() + 0.05, _step_of(ctx))
        assert sg.is_topological(got) and peak(p, got) <= peak(p, stored), case
        assert max(w, initial_live(p)) == peak(p, got)


def test_adaptive_windows_never_worse_on_larger_graphs():
    """Small windows that grow on failure: valid, never worse, and often better."""
    rng = random.Random(63)
    better = 0
    for case, (sg, p) in enumerate(random_problems(rng, 40, (20, 40), source_share=0.2)):
        ctx = _context(p)
        order = canonical(ctx_macros(ctx), random_order(rng, p))
        steps = max(step_costs(p, order))
        got, worst = improve_order(ctx, 0, (1 << p.n_ops) - 1, resident_after_inputs(p),
                                   order, steps, 0, time.monotonic() + 0.5, search, _step,
                                   window=4)
        assert sg.is_topological(got), case
        assert max(worst, initial_live(p)) == peak(p, got) <= peak(p, order), case
        better += peak(p, got) < peak(p, order)
    assert better > 20


def test_compiled_beam_keeps_the_same_states(monkeypatch):
    """The beam's layers in C (``searchcore.beam``) keep the states the Python loop keeps,
    in the same order (ties by the order a state was first reached): the same order and
    maximum step for every width, on random graphs (in-place sharing, sources run late,
    segments between cut ops) and RandWire stages."""
    import pytest

    from tflite_reorder import improve, searchcore
    from tflite_reorder.scheduler import _prepare, _trailing
    from tools.bench import randwire_problem

    if searchcore.unavailable():
        pytest.skip(searchcore.unavailable())
    rng = random.Random(64)
    problems = [p for _, p in random_problems(rng, 120, (3, 40), source_share=0.2)]
    problems += [randwire_problem(24, seed=2), randwire_problem(48, seed=1)]
    compared = 0
    for p in problems:
        ctx = _context(p)
        for start, goal, mem, _order, _worst in _prepare(ctx, None).seg_data:
            if start == goal:
                continue
            goal &= ~_trailing(ctx, start, goal)
            for width in (1, 2, 5, 16, 64):
                got = []
                for compiled in (True, False):
                    monkeypatch.setattr(improve, "COMPILED_BEAM", compiled)
                    got.append(beam_order(ctx, start, goal, mem, width, float("inf"),
                                          _step_of(ctx)))
                assert got[0] == got[1], (p.n_ops, width)
                compared += 1
    assert compared > 400
