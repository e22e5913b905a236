"""The decision version of the exact search: is there an order whose every step is <= K?

``scheduler.search`` answers the optimisation question best-first: states are keyed by
max(peak so far, floor) and every key below the optimum is exhausted before the first goal
is taken. Each key layer is explored with free moves valid only under that key, so the
lower layers are crowded with states that a higher key would have skipped. With the bound
``K`` fixed instead, every state is either feasible (its peak so far is at most K) or
dropped, and two rules are strong at once:

* **Free moves under K.** A ready op whose kept outputs are no larger than the inputs that
  die at it, and whose step is at most K, is run at once: moving it to the front of any
  completion keeps every later step (the lemma ``scheduler.search`` relies on, with K as
  the key), so if a completion within K exists, one starting with that op does.
* **Failed states stay failed.** Whether a completion within K exists from downset S
  depends on S alone (its resident bytes are a function of S), so a depth-first search
  with one visited set of states explores each state once.

So ``decide`` is a depth-first search over downsets under K with a visited set: it ends
with an order (found), a proof that none exists (every step-K-feasible state explored),
or a limit. ``scheduler`` asks it "is there an order better than the incumbent?" (K = the
incumbent's peak minus one byte): found, the incumbent improves; proved, the incumbent is
optimal (RandWire stages: 48 nodes in 0.1 s, 56 in 0.7 s, where best-first needed 0.8 s
and more than 10 s). Children are tried lowest resident bytes after them first (then
lowest op), which finds the orders of the improving answers in a few hundred states.

The pure-Python loop here is the reference; ``searchcore.decide`` runs the same states in
the same order in C (tests compare the two).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .reductions import bits
from .searchcore import compiled_decide
from .searchcore import unavailable as compiled_unavailable

Step = Callable  # scheduler._step / _mstep: (ctx, S, v) -> (up, delta, S2, dead)
OVER_NONE = 1 << 62  # ``Decision.over`` when no step above K was seen


@dataclass
class Decision:
    """``heads``: the macros an order within K runs, in order (None: none found);
    ``states``: states explored; ``stopped``: "", "time limit" or "state limit"."""

    heads: list[int] | None
    states: int
    stopped: str = ""
    over: int = OVER_NONE  # the least step above K seen (a lower bound once proved)

    @property
    def proved(self) -> bool:
        """No order within K exists (the whole feasible space was explored)."""
        return self.heads is None and not self.stopped


def newly_ready(ctx, goal: int, v: int, S: int) -> int:
    """The macros of ``goal`` that running v's macro (now in S) makes ready."""
    pred_mask, r = ctx.mpred, 0
    for w in ctx.msuccs[v]:
        if (goal >> w) & 1 and pred_mask[w] & ~S == 0 and not (S >> w) & 1:
            r |= 1 << w
    return r


def free_moves(ctx, step: Step, goal: int, S: int, M: int, key: int, ready: int,
               check: int) -> tuple[int, int, int, tuple[int, ...]]:
    """Apply free moves under ``key`` until none is left; ``check`` = the ready ops that
    may be free. Returns the state, its resident bytes, its ready macros and the macros run.

    An op that was not free stays not free unless the key rose, resident bytes fell, it
    just became ready, or an input it shares with the op just run may now die.
    """
    can_free = ctx.can_free
    shares = ctx.shares if not ctx.source else ctx.mshares
    moved: tuple[int, ...] = ()
    r = check & can_free & ready
    while r:
        low = r & -r
        v = low.bit_length() - 1
        r ^= low
        up, delta, S2, _ = step(ctx, S, v)
        if delta <= 0 and M + up <= key:
            S, M = S2, M + delta
            moved += (v,)
            new = newly_ready(ctx, goal, v, S)
            ready = (ready ^ low) | new
            r = (ready if delta < 0 else (r | new | (shares[v] & ready))) & can_free
    return S, M, ready, moved


def ready_at(ctx, start: int, goal: int) -> int:
    """The macros of ``goal`` (sources excluded) ready in downset ``start``."""
    ready, rest = 0, goal & ~start & ~ctx.source
    while rest:
        low = rest & -rest
        if ctx.mpred[low.bit_length() - 1] & ~start == 0:
            ready |= low
        rest ^= low
    return ready


def decide(ctx, start: int, goal: int, mem: int, K: int, deadline: float,
           max_states: int, step: Step, compiled: bool = True) -> Decision:
    """Depth-first search for an order of the macros from downset ``start`` (resident
    ``mem`` bytes) to ``goal`` (without trailing sources) whose every step is at most K.

    ``max_states``: explored states before it stops ("state limit"; the compiled loop also
    stops at a memory budget); ``deadline``: time.monotonic() at which it stops.
    """
    ready0 = ready_at(ctx, start, goal)
    if compiled and not compiled_unavailable():
        heads, states, stopped, over = compiled_decide(ctx, start, goal, ready0, mem, K,
                                                       deadline, max_states)
        return Decision(heads, states, stopped, over)
    visited: set[int] = set()
    # a frame: [state, resident bytes, macros run on entering it, children, next child]
    stack: list[list] = []
    over = OVER_NONE

    def enter(S: int, M: int, ready: int) -> list | None:
        nonlocal over
        S, M, ready, moved = free_moves(ctx, step, goal, S, M, K, ready, ready)
        if S in visited:
            return None
        visited.add(S)
        kids = []
        for v in bits(ready):
            low = 1 << v
            up, delta, S2, _ = step(ctx, S, v)
            if M + up <= K:
                kids.append((delta, v, S2, (ready ^ low) | newly_ready(ctx, goal, v, S2)))
            elif M + up < over:
                over = M + up
        kids.sort(key=lambda k: (k[0], k[1]))
        return [S, M, moved, kids, 0]

    frame = enter(start, mem, ready0)
    if frame is None:
        return Decision(None, 0, "", over)
    stack.append(frame)
    stopped = ""
    while stack:
        top = stack[-1]
        if top[0] == goal:
            heads: list[int] = []
            for f in stack:
                heads += f[2]
                if f is not top:
                    heads.append(f[3][f[4] - 1][1])
            return Decision(heads, len(visited), "", over)
        if top[4] == len(top[3]):
            stack.pop()
            continue
        delta, v, S2, ready2 = top[3][top[4]]
        top[4] += 1
        if S2 in visited:
            continue
        child = enter(S2, top[1] + delta, ready2)
        if child is None:
            continue
        stack.append(child)
        if len(visited) & 15 == 0:
            if time.monotonic() > deadline:
                stopped = "time limit"
            elif len(visited) > max_states:
                stopped = "state limit"
            if stopped:
                break
    return Decision(None, len(visited), stopped, over)
