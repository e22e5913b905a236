"""Where to look first: the rewrite sites that act where the arena peaks.

A model like Keras' DenseNet121 has hundreds of sites; applying all of them builds a graph
so large (and a TFLM tail so long) that it is worse than none, and trying them one by one
costs a schedule each. The sites that can lower the peak are those at operators that run
while the most bytes are live (in the input's optimal order), plus the sites their rewrite
needs: a convolution's site and the site of the concatenation that feeds it through
per-channel ops (batch norm, ReLU) go together, since partitioning one without the other
leaves the copy the peak is made of.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ai_edge_litert import schema_py_generated as schema

from .edit import Editor
from .split import input_chain

CONV_KINDS = ("split", "pool_first")


def hot_sites(
    model: schema.ModelT, sites: Iterable, live: Mapping[tuple[int, int], int], threshold: int
) -> list:
    """The ``sites`` (``search.Site``) whose op, or a consumer of its outputs, runs with at
    least ``threshold`` bytes live (``live``: (subgraph, op) -> bytes), with the sites
    linked to them (a conv site and the concat feeding it)."""
    sites = list(sites)
    editors: dict[int, Editor] = {}
    index: dict[int, dict[int, int]] = {}
    for s in {site.subgraph for site in sites}:
        editors[s] = Editor(model, s)
        index[s] = {id(op): i for i, op in enumerate(editors[s].sg.operators)}
    by_key = {(site.subgraph, site.op, site.kind): site for site in sites}
    hot, links = set(), []
    for site in sites:
        ed, idx = editors[site.subgraph], index[site.subgraph]
        op = ed.sg.operators[site.op]
        ops = [site.op] + [idx[id(e)] for t in ed.outputs(op) for e in ed.consumers(t)]
        if max(live.get((site.subgraph, i), 0) for i in ops) >= threshold:
            hot.add(site)
        if site.kind in CONV_KINDS:
            concat = _feeding_concat(ed, op, idx)
            if concat is not None and (site.subgraph, concat, "concat") in by_key:
                links.append((site, by_key[(site.subgraph, concat, "concat")]))
    linked = {b for a, b in links if a in hot} | {a for a, b in links if b in hot}
    return sorted(hot | linked)


def _feeding_concat(ed: Editor, op: schema.OperatorT, idx: dict[int, int]) -> int | None:
    """The index of the CONCATENATION whose output reaches ``op``'s data input through
    per-channel ops only, if any."""
    chain = input_chain(ed, op)
    head = chain[0] if chain else op
    data = [j for j in ed.inputs(head) if j >= 0 and ed.constant(j) is None]
    prod = ed.producer(data[0]) if data else None
    if prod is None or ed.opcode(prod) != "CONCATENATION":
        return None
    return idx[id(prod)]
