"""The Watts-Strogatz generator behind RandWire stages, shared by make_models.py and bench.py
(so bench's n=32, seed=1 stage is the first stage of ``models/randwire_ws_int8.tflite``)."""

from __future__ import annotations

import numpy as np


def ws_graph(n: int, k: int, p: float, seed: int) -> list[tuple[int, int]]:
    """Watts-Strogatz graph (networkx's algorithm), edges oriented low -> high."""
    rs = np.random.RandomState(seed)
    adj: dict[int, set[int]] = {i: set() for i in range(n)}
    for i in range(n):
        for j in range(1, k // 2 + 1):
            a, b = i, (i + j) % n
            adj[a].add(b)
            adj[b].add(a)
    for j in range(1, k // 2 + 1):
        for u in range(n):
            v = (u + j) % n
            if rs.rand() < p:
                w = int(rs.randint(n))
                ok = True
                while w == u or w in adj[u]:
                    if len(adj[u]) >= n - 1:
                        ok = False
                        break
                    w = int(rs.randint(n))
                if ok:
                    adj[u].discard(v)
                    adj[v].discard(u)
                    adj[u].add(w)
                    adj[w].add(u)
    return sorted({(min(a, b), max(a, b)) for a in adj for b in adj[a]})
