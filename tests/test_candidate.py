"""candidate: graph descriptions build the same graph (and peaks) as the models they describe."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import MODELS

from tflite_reorder.candidate import GraphSpec, describe_graph, read_graph
from tflite_reorder.flatbuffer_io import ModelError
from tflite_reorder.memory import simulate

ONE_SUBGRAPH = [m for m in MODELS if len(read_graph(m).subgraphs) == 1]


def _view(graph):
    """Everything scheduling reads (stored shapes are the description's true shapes)."""
    sg = graph.subgraphs[0]
    tensors = [(t.shape, t.dtype, t.nbytes, t.in_arena) for t in sg.tensors]
    ops = [(op.opcode, op.inputs, op.outputs) for op in sg.ops]
    return tensors, ops, sg.inputs, sg.outputs, sg.preds


@pytest.mark.parametrize("path", ONE_SUBGRAPH, ids=lambda p: p.stem)
def test_description_rebuilds_the_graph(path) -> None:
    g = read_graph(path)
    spec = describe_graph(g)
    as_dict = json.loads(json.dumps(dataclasses.asdict(spec)))  # the JSON round trip
    for form in (spec, as_dict):
        g2 = read_graph(form)
        assert _view(g2) == _view(g)
        for order in (g.stored_orders(), [list(range(len(g.subgraphs[0].ops)))[::-1]]):
            if g.subgraphs[0].is_topological(order[0]):
                for inplace in (False, True):
                    assert simulate(g2, order, inplace).lower_bound == \
                        simulate(g, order, inplace).lower_bound


def _tiny(**changes) -> dict:
    d = {"tensors": [{"shape": [1, 8, 8, 4]}, {"shape": [4, 3, 3, 4], "constant": True},
                     {"shape": [1, 8, 8, 4]}, {"shape": [1, 8, 8, 4]}],
         "ops": [{"opcode": "CONV_2D", "inputs": [0, 1], "outputs": [2]},
                 {"opcode": "RELU", "inputs": [2], "outputs": [3]}],
         "inputs": [0], "outputs": [3]}
    d.update(changes)
    return d


def test_tiny_description_peaks() -> None:
    g = read_graph(_tiny())
    assert not g.subgraphs[0].tensors[1].in_arena
    assert simulate(g, g.stored_orders(), inplace=False).lower_bound == 2 * 256
    assert simulate(g, g.stored_orders(), inplace=True).lower_bound == 2 * 256
    assert g.subgraphs[0].ops[1].opcode == "RELU"


@pytest.mark.parametrize(("changes", "message"), [
    ({"ops": [{"opcode": "CONV_3X", "inputs": [0], "outputs": [1]}]}, "unknown operator"),
    ({"tensors": [{"shape": [1, 8], "dtype": "INT7"}]}, "unknown dtype"),
    ({"tensors": [{"shape": [1, -8]}]}, "negative dimension"),
    ({"tensors": [{"shape": "abc"}]}, "not a list of ints"),
    ({"outputs": [9]}, "refers to tensor 9"),
    ({"ops": [{"opcode": "RELU", "inputs": [0]}]}, "malformed"),
    ({"ops": [{"opcode": "RELU", "inputs": [3], "outputs": [2]},
              {"opcode": "RELU", "inputs": [2], "outputs": [3]}]}, "cycle"),
])
def test_bad_descriptions(changes, message) -> None:
    with pytest.raises(ModelError, match=message):
        read_graph(_tiny(**changes))


def test_several_subgraphs_cannot_be_described(models_dir) -> None:
    with pytest.raises(ModelError, match="one subgraph"):
        describe_graph(read_graph(models_dir / "while_float32.tflite"))


def test_spec_dataclass_form() -> None:
    spec = GraphSpec.from_dict(_tiny())
    assert read_graph(spec) == read_graph(_tiny())
