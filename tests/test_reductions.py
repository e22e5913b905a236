"""Interchangeable ops (reductions.interchangeable): the renaming of a class is an
automorphism (same step costs for every order), and ordering each class keeps the optimum
(brute force on random graphs with twin ops)."""

from __future__ import annotations

import random

from exhaustive import optimum
from randgraphs import random_order, random_subgraph

from tflite_reorder.decompose import is_order
from tflite_reorder.memory import build_problem, step_costs
from tflite_reorder.reductions import in_class_order, interchangeable, ordered
from tflite_reorder.scheduler import schedule


def _twins(rng: random.Random, count: int, n_ops: tuple[int, int]):
    for _ in range(count):
        sg = random_subgraph(rng, rng.randint(*n_ops), source_share=0.1, twin_share=0.4)
        yield sg, build_problem(sg, inplace=rng.random() < 0.5)


def test_renaming_a_class_keeps_every_step():
    rng = random.Random(91)
    found = 0
    for case, (_, p) in enumerate(_twins(rng, 300, (3, 20))):
        classes = interchangeable(p)
        found += len(classes)
        q = ordered(p, classes)
        for _ in range(5):
            order = random_order(rng, p)
            renamed = in_class_order(classes, order)
            assert is_order(q, renamed), case
            assert step_costs(p, renamed) == step_costs(p, order), case
    assert found > 100


def test_ordering_classes_keeps_the_optimum():
    rng = random.Random(92)
    reduced = 0
    for case, (sg, p) in enumerate(_twins(rng, 200, (3, 9))):
        classes = interchangeable(p)
        best = optimum(p)
        assert optimum(ordered(p, classes)) == best, case
        res = schedule(p, time_limit=30)
        assert sg.is_topological(res.order), case
        assert res.optimal and res.peak == best, case
        reduced += bool(classes)
    assert reduced > 50
