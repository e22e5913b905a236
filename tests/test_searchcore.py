"""The compiled search loop (searchcore, C) against the Python loop it transcribes.

Both must give the same answer: the same order, peak, lower bound, proof and number of
states (the C loop runs the same states in the same order), on random graphs of one and of
several 64-bit words, with in-place sharing, sources run late, per-state bounds from the
first state on, a state limit that stops the search, and on every shipped model.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from conftest import ALL_MODELS
from randgraphs import random_subgraph

from tflite_reorder import bounds, scheduler, searchcore
from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import build_problem
from tflite_reorder.scheduling import schedule_model
from tflite_reorder.shapes import true_shapes
from tools.bench import randwire_problem

needs_core = pytest.mark.skipif(
    bool(searchcore.unavailable()),
    reason=f"compiled search core: {searchcore.unavailable()}")


def _both(monkeypatch, run):
    """``run()`` with the Python loop, then with the compiled one."""
    monkeypatch.setattr(scheduler, "COMPILED_SEARCH", False)
    ref = run()
    monkeypatch.setattr(scheduler, "COMPILED_SEARCH", True)
    return ref, run()


def _same(ref, got, what):
    assert got.order == ref.order, what
    assert (got.peak, got.lower_bound, got.optimal, got.states, got.stopped) == (
        ref.peak, ref.lower_bound, ref.optimal, ref.states, ref.stopped), what


def test_built_in_ci():
    """CI installs the package with a C compiler: the extension must have been built."""
    if os.environ.get("CI"):
        assert searchcore._search is not None, searchcore.unavailable()
    else:
        pytest.skip("not in CI (CI=true): a build without a compiler may fall back")


def test_the_environment_variable_selects_python(monkeypatch):
    monkeypatch.setenv(searchcore.ENV, "1")
    assert searchcore.ENV in searchcore.unavailable()
    monkeypatch.setenv(searchcore.ENV, "0")
    assert searchcore.ENV not in searchcore.unavailable()


def test_falls_back_to_python_without_the_extension(monkeypatch):
    """A missing extension: the reason is reported and the Python loop gives the answer."""
    rng = random.Random(5)
    p = build_problem(random_subgraph(rng, 12), inplace=True)
    ref = scheduler.schedule(p, time_limit=30)
    monkeypatch.setattr(searchcore, "_IMPORT_ERROR", "the compiled search core is not built")
    monkeypatch.setattr(searchcore, "_search", None)
    assert "not built" in searchcore.unavailable()
    got = scheduler.schedule(p, time_limit=30)
    assert (got.order, got.peak, got.optimal) == (ref.order, ref.peak, ref.optimal)


@needs_core
@pytest.mark.parametrize("inplace", [False, True])
def test_same_answer_on_random_graphs(inplace, monkeypatch):
    rng = random.Random(77 + inplace)
    searched = 0
    for case in range(250):
        sg = random_subgraph(rng, rng.randint(3, 40), source_share=rng.choice([0.0, 0.2]))
        p = build_problem(sg, inplace=inplace)
        ref, got = _both(monkeypatch, lambda p=p: scheduler.schedule(p, time_limit=60))
        _same(ref, got, case)
        searched += ref.states > 0
    assert searched > 50  # most graphs needed a search, not only the starting orders


@needs_core
@pytest.mark.parametrize("compiled_bounds", [False, True])
def test_same_answer_with_general_sources_and_bounds_from_the_start(compiled_bounds,
                                                                    monkeypatch):
    """Per-state closure bounds on every state: on compiled flows (with the reuse of a
    closure by the states inside it), or by calling back into bounds.py."""
    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    monkeypatch.setattr(scheduler, "COMPILED_BOUNDS", compiled_bounds)
    monkeypatch.setattr(scheduler, "CLOSURE_AFTER", 0)
    monkeypatch.setattr(scheduler, "CLOSURE_CANDIDATES", 8)
    rng = random.Random(2024)
    for case in range(120):
        sg = random_subgraph(rng, rng.randint(3, 30), source_share=0.3)
        p = build_problem(sg, inplace=rng.random() < 0.5)

        def run(p=p):
            ctx = scheduler._context(p, general_sources=True)
            return scheduler.schedule(p, time_limit=60, ctx=ctx)

        ref, got = _both(monkeypatch, run)
        _same(ref, got, case)


@needs_core
@pytest.mark.parametrize("nodes", [8, 16, 24, 28, 32])
def test_same_answer_on_multi_word_randwire_stages(nodes, monkeypatch):
    """RandWire stages of 19-74 ops (one or two words per state), and two stages."""
    for stages in (1, 2):
        p = randwire_problem(nodes, seed=nodes, stages=stages)
        ref, got = _both(monkeypatch, lambda p=p: scheduler.schedule(p, time_limit=60))
        _same(ref, got, (nodes, stages))
        assert ref.optimal


def _same_searches(p, max_states, monkeypatch) -> int:
    """Compare every segment's search of ``p``, one by one; the number that stopped.

    One by one, because after a stopped search the improvement phase has time budgets,
    so a faster loop may legitimately improve an order further than a slower one."""
    ctx = scheduler._context(p)
    prep = scheduler._prepare(ctx, None)
    stopped = 0
    for start, goal, mem, order, worst in prep.seg_data:
        if start == goal:
            continue

        def run(start=start, goal=goal, mem=mem, order=order, worst=worst):
            return scheduler.search(ctx, start, goal, mem, prep.floor, (order, worst),
                                    time.monotonic() + 60, max_states)

        ref, got = _both(monkeypatch, run)
        assert (got.order, got.worst, got.bound, got.exact, got.states, got.stopped) == (
            ref.order, ref.worst, ref.bound, ref.exact, ref.states, ref.stopped)
        stopped += ref.stopped == "state limit"
    return stopped


@needs_core
def test_same_answer_with_bounds_on_a_long_search(monkeypatch):
    """A 32-node stage with per-state bounds after 1,000 states: thousands of compiled
    flows, many bounds taken over from a closure found before."""
    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    monkeypatch.setattr(scheduler, "CLOSURE_AFTER", 1000)
    p = randwire_problem(32, seed=1)
    ref, got = _both(monkeypatch, lambda: scheduler.schedule(p, time_limit=60))
    _same(ref, got, 32)
    assert ref.optimal


@needs_core
@pytest.mark.parametrize("max_states", [50, 400, 3000])
def test_same_anytime_answer_at_a_state_limit(max_states, monkeypatch):
    """A state limit stops both loops at the same state: the same open frontier, the same
    completions of it, the same bound and the same order."""
    stopped = sum(_same_searches(randwire_problem(40, seed=seed), max_states, monkeypatch)
                  for seed in range(3))
    assert stopped


@needs_core
def test_wide_states(monkeypatch):
    """Problems of 64-200 ops: state bitsets at and across word boundaries."""
    rng = random.Random(9)
    for n in (64, 65, 127, 128, 129, 200):
        p = build_problem(random_subgraph(rng, n, source_share=0.1), inplace=True)
        _same_searches(p, 3000, monkeypatch)


@needs_core
@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda p: p.stem)
def test_same_answer_on_shipped_models(model, monkeypatch):
    loaded = load_model(model)
    graph = build_graph(loaded.model, true_shapes(loaded.model))
    for inplace in (False, True):
        (ref_orders, ref), (got_orders, got) = _both(
            monkeypatch, lambda inplace=inplace: schedule_model(graph, inplace, 60))
        assert got_orders == ref_orders
        for s in ref:
            _same(ref[s], got[s], (model.stem, inplace, s))


@needs_core
def test_compiled_flow_gives_the_closure_bound():
    """The compiled max flow (forced ops merged with the source) against
    ``bounds.StateClosure.bound`` (OR-tools) and ``closure_bound`` (pure Python), on random
    downsets of random graphs and RandWire stages."""
    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(8)
    problems = [build_problem(random_subgraph(rng, rng.randint(4, 70), source_share=0.1),
                              inplace=rng.random() < 0.5) for _ in range(30)]
    problems += [randwire_problem(24, seed=3), randwire_problem(48, seed=1)]
    checked = 0
    for p in problems:
        ctx = scheduler._context(p)
        n = p.n_ops
        for v in rng.sample(range(n), min(n, 4)):
            sc = bounds.StateClosure(ctx, v)
            flow = searchcore.flow(sc)
            for _ in range(8):
                S = _random_downset(rng, p, ctx.anc[v], ctx.desc[v] | 1 << v)
                got = searchcore.flow_bound(flow, S, n)
                assert got == sc.bound(S), (v, S)
                checked += 1
            S = _random_downset(rng, p, ctx.anc[v], ctx.desc[v] | 1 << v)
            saved = bounds.COMPILED_FLOW
            bounds.COMPILED_FLOW = False
            try:
                assert searchcore.flow_bound(flow, S, n) == bounds.closure_bound(
                    ctx, v, forced=S)
            finally:
                bounds.COMPILED_FLOW = saved
    assert checked > 500


@needs_core
def test_compiled_flow_with_ops_forced_out():
    """``searchcore.FlowClosure`` and ``searchcore.shared_flow`` (compiled flows with ops
    forced in and out, the greedy start, remembered values) against OR-tools'
    ``StateClosure.bound(S, out)`` and ``SharedClosure.bound``, on random downsets S and
    upsets ``out`` of random graphs and a RandWire stage, INF cases included."""
    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(9)
    problems = [build_problem(random_subgraph(rng, rng.randint(4, 70), source_share=0.1),
                              inplace=rng.random() < 0.5) for _ in range(30)]
    problems.append(randwire_problem(48, seed=1))
    checked = infinite = 0
    for p in problems:
        ctx = scheduler._context(p)
        n, full = p.n_ops, (1 << p.n_ops) - 1
        shared = bounds.SharedClosure(ctx)
        fast = bounds.SharedClosure(ctx)
        fast.flow_value = searchcore.shared_flow(ctx, fast)
        for v in rng.sample(range(n), min(n, 4)):
            sc = bounds.StateClosure(ctx, v)
            fc = searchcore.flow_closure(ctx, lambda _v, sc=sc: sc, v)
            for _ in range(10):
                S = _random_downset(rng, p, 0, ctx.desc[v] | 1 << v)
                if rng.random() < 0.8:  # mostly feasible: a downset between S and v
                    D = _random_downset(rng, p, S | ctx.anc[v], ctx.desc[v] | 1 << v)
                else:
                    D = _random_downset(rng, p, 0, 0)
                out = full & ~D
                want = sc.bound(S, out)
                assert fc.bound(S, out) == want == shared.bound(v, S, out), (v, S, out)
                assert fast.bound(v, S, out) == want
                assert fc.bound(S, out) == want  # remembered
                checked += 1
                infinite += want == bounds.INF
            assert fast.bound(v) == bounds.closure_bound(ctx, v)
    assert checked > 1000 and 100 < infinite < checked // 2


def _set_bound_pair(ctx, cands, closure_of, memo_bytes=searchcore.SetBounds.MEMO_BYTES):
    """The Python set bound (``order_bound_work`` with a ``PairTable``, on ``closure_of``)
    and the compiled one, for the same candidates and root bounds."""
    shared = bounds.SharedClosure(ctx)
    root = [max(int(s), 0 if (b := shared.bound(v)) is None else b)
            for v, s in enumerate(ctx.static_lb)]
    ref = bounds.set_bound(ctx, closure_of, bounds.PairTable(ctx, closure_of, root).lower)
    return ref, searchcore.SetBounds(ctx, scheduler_closure(ctx), cands, root, memo_bytes)


def scheduler_closure(ctx):
    return lambda v: scheduler._state_closure(ctx, v)


def _grown_sets(rng, ctx, cands, sizes):
    """Sets as ``bounds.pair_bounds`` asks for them: a set, then it with one more op."""
    for _ in range(sizes):
        base = rng.sample(cands, min(len(cands), rng.randint(1, 5)))
        for c in rng.sample(cands, min(len(cands), 6)):
            for ops in (base, [*base, c]):
                if len(set(ops)) >= 2:
                    yield tuple(sorted(set(ops)))


@needs_core
def test_compiled_set_bounds_are_order_bound_work():
    """``searchcore.SetBounds`` (``_setbound.c``) gives ``order_bound_work``'s bound and
    count of placed sets (the same steps in the same order) with ``PairTable.lower``, on
    OR-tools' closures, for sets grown one op at a time (so that bounds come from looser
    keys), with and without ``above``, on random graphs, with a flow memo big enough and
    one so small that it starts again at every growth."""
    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(31)
    checked = cut = 0
    for case in range(40):
        p = build_problem(random_subgraph(rng, rng.randint(4, 40), source_share=0.1),
                          inplace=rng.random() < 0.5)
        ctx = scheduler._context(p)
        memo = searchcore.SetBounds.MEMO_BYTES if case % 2 else 1
        ref, got = _set_bound_pair(ctx, list(range(p.n_ops)), scheduler_closure(ctx), memo)
        for ops in _grown_sets(rng, ctx, list(range(p.n_ops)), 4):
            exact = ref(ops, -1)
            assert got(ops, -1) == exact, (case, ops)
            above = exact[0] - rng.choice([0, 1, exact[0] // 4 + 1])
            want = ref(ops, above)
            assert got(ops, above) == want, (case, ops, above)
            checked += 1
            cut += want[1] < exact[1]
    assert checked > 500 and cut > 50


@needs_core
def test_compiled_set_bounds_on_a_randwire_stage():
    """The same on a 48-node RandWire stage (109 ops, two words per mask) with the grown
    sets of the scheduler's set bounds, on compiled closures (``FlowClosure``): here most
    constrained bounds come from looser keys. Sets outside the candidates or larger than
    ``MAX_OPS`` are refused."""
    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(32)
    p = randwire_problem(48, seed=1)
    ctx = scheduler._context(p)
    cands = rng.sample(range(p.n_ops), 40)
    closure = lambda v: searchcore.flow_closure(ctx, scheduler_closure(ctx), v)  # noqa: E731
    ref, got = _set_bound_pair(ctx, cands, closure)
    checked = 0
    for ops in _grown_sets(rng, ctx, cands, 12):
        assert got(ops, -1) == ref(ops, -1), ops
        checked += 1
    assert checked > 100
    outside = next(v for v in range(p.n_ops) if v not in cands)
    with pytest.raises(ValueError):
        got((cands[0], outside), -1)
    with pytest.raises(ValueError):
        got(tuple(cands[:searchcore.SetBounds.MAX_OPS + 1]), -1)


def _random_downset(rng, p, forced_in: int, forced_out: int) -> int:
    """A random downset that holds ``forced_in``'s ops and none of ``forced_out``'s."""
    S = 0
    order = list(range(p.n_ops))
    rng.shuffle(order)
    changed = True
    while changed:
        changed = False
        for u in order:
            if (S >> u) & 1 or (forced_out >> u) & 1:
                continue
            if not all((S >> q) & 1 for q in p.preds[u]):
                continue
            if (forced_in >> u) & 1 or rng.random() < 0.3:
                S |= 1 << u
                changed = True
    return S


@needs_core
def test_closures_without_a_network_fall_back_to_python_bounds(monkeypatch):
    """A StateClosure that does not expose its flow network: the C loop asks Python for the
    per-state bounds, with the same answer as the Python loop."""
    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")

    class NoNetwork(bounds.StateClosure):
        def __init__(self, ctx, v):
            super().__init__(ctx, v)
            del self.network

    monkeypatch.setattr(scheduler, "StateClosure", NoNetwork)
    monkeypatch.setattr(scheduler, "CLOSURE_AFTER", 0)
    rng = random.Random(31)
    for case in range(40):
        p = build_problem(random_subgraph(rng, rng.randint(8, 30)), inplace=True)
        ref, got = _both(monkeypatch, lambda p=p: scheduler.schedule(p, time_limit=60))
        _same(ref, got, case)


@needs_core
def test_set_search_variants_ask_for_the_same_sets():
    """``scheduler.set_search`` in C and in Python (``tools/setbench.py``, the
    ``--set-bounds`` benchmark): the same bound values, first reached at the same count of
    sets, wherever both got that far in a second each."""
    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    from tools import setbench

    ref, got = (setbench.run(16, v, 1.0) for v in ("python", "C"))
    common = min(len(ref["reached"]), len(got["reached"]))
    assert common >= 2
    assert [(v, k) for v, _, k in ref["reached"][:common]] == [
        (v, k) for v, _, k in got["reached"][:common]]
    assert ref["candidates"] == got["candidates"]
