"""Which layers form which loop body or conditional branch, read only through TensorRT's API.

TensorRT has no subgraph objects: a loop is the set of layers whose boundary layers
(ITERATOR, RECURRENCE, TRIP_LIMIT, LOOP_OUTPUT) report the same `ILoopBoundaryLayer.loop`,
and a conditional those whose CONDITION / CONDITIONAL_OUTPUT report the same
`IIfConditionalBoundaryLayer.conditional`. Everything else is placed by dataflow, the
way TensorRT's own checks place it (a network output computed from a loop's iterator is
"in a loop", docs/reference.md):

* a layer is inside loop L if it depends on L's iterators or recurrences, other than
  through L's LOOP_OUTPUT layers (the only way a value leaves a loop); a layer that
  depends only on values from outside is loop-invariant and runs once, before the loop;
* a layer is inside branch s of conditional C if everything that uses it is inside that
  branch or is input s of one of C's CONDITIONAL_OUTPUT layers, so it runs only when the
  branch is taken (TensorRT's conditionals are lazy); a layer both branches (or the rest
  of the network) use runs before the conditional;
* a CONDITION layer feeds its conditional's outputs and a TRIP_LIMIT its loop's outputs
  (edges that are not tensors), so a loop or conditional nests inside another loop when
  its trip count or predicate depends on that loop.

`analyze` returns the tree of regions: the network's top level, each loop's body, each
branch. `netdef.reference.program` compiles each region into its own list of steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from netdef.errors import RunnerError

LOOP_KINDS = ("ITERATOR", "RECURRENCE", "TRIP_LIMIT", "LOOP_OUTPUT")
CONDITIONAL_KINDS = ("CONDITION", "CONDITIONAL_OUTPUT")  # CONDITIONAL_INPUT is placed like any layer


@dataclass
class Region:
    """Layers that run together: the top level, one loop body, or one branch."""

    layers: list = field(default_factory=list)  # (kind, layer) placed here, in network order
    loops: list["LoopNode"] = field(default_factory=list)
    conditionals: list["CondNode"] = field(default_factory=list)

    def all_layers(self) -> Iterator[tuple[str, Any]]:
        yield from self.layers
        for node in (*self.loops, *self.conditionals):
            yield from node.all_layers()


@dataclass
class LoopNode:
    name: str
    trip_limits: list = field(default_factory=list)  # ITripLimitLayer
    iterators: list = field(default_factory=list)  # IIteratorLayer
    recurrences: list = field(default_factory=list)  # IRecurrenceLayer
    outputs: list = field(default_factory=list)  # ILoopOutputLayer
    body: Region = field(default_factory=Region)
    first: int = 0  # network index of its first layer (keeps network order among equals)

    def all_layers(self) -> Iterator[tuple[str, Any]]:
        for kind, group in zip(LOOP_KINDS, (self.iterators, self.recurrences, self.trip_limits, self.outputs)):
            for layer in group:
                yield kind, layer
        yield from self.body.all_layers()


@dataclass
class CondNode:
    name: str
    condition: Any = None  # IConditionLayer
    outputs: list = field(default_factory=list)  # IIfConditionalOutputLayer
    branches: tuple = field(default_factory=lambda: (Region(), Region()))  # (true, false)
    first: int = 0

    def all_layers(self) -> Iterator[tuple[str, Any]]:
        yield "CONDITION", self.condition
        for layer in self.outputs:
            yield "CONDITIONAL_OUTPUT", layer
        for branch in self.branches:
            yield from branch.all_layers()


def _inputs(layer: Any) -> list:
    return [layer.get_input(k) for k in range(layer.num_inputs)]


def _outputs(layer: Any) -> list[str]:
    return [layer.get_output(k).name for k in range(layer.num_outputs)]


ROOT = ("root",)


def analyze(layers: list[tuple[str, Any]], network_outputs: set[str]) -> Region:
    """Place every layer (kind, downcast layer) in the region tree; raise RunnerError for a loop or
    conditional TensorRT would reject (a value read past a loop's or branch's boundary)."""
    return _Analysis(layers, network_outputs).tree()


class _Analysis:
    def __init__(self, layers: list[tuple[str, Any]], network_outputs: set[str]) -> None:
        self.layers = layers
        n = len(layers)
        self.producer: dict[str, int] = {}
        for i, (_, layer) in enumerate(layers):
            for name in _outputs(layer):
                self.producer[name] = i
        # compounds: key -> the TensorRT object (kept alive, so id() stays unique) and its boundary
        self.owner: dict[int, tuple] = {}  # boundary layer index -> ("loop" | "cond", key)
        self.loops: dict[int, dict] = {}
        self.conds: dict[int, dict] = {}
        for i, (kind, layer) in enumerate(layers):
            if kind in LOOP_KINDS:
                obj = layer.loop
                entry = self.loops.setdefault(id(obj), {"obj": obj, "first": i, **{k: [] for k in LOOP_KINDS}})
                entry[kind].append(i)
                self.owner[i] = ("loop", id(obj))
            elif kind in CONDITIONAL_KINDS:
                obj = layer.conditional
                entry = self.conds.setdefault(id(obj), {"obj": obj, "first": i, **{k: [] for k in CONDITIONAL_KINDS}})
                entry[kind].append(i)
                self.owner[i] = ("cond", id(obj))
        for entry in self.conds.values():
            if len(entry["CONDITION"]) != 1 or not entry["CONDITIONAL_OUTPUT"]:
                raise RunnerError(f"conditional {entry['obj'].name!r} needs exactly one condition and at least one "
                                  f"output (it has {len(entry['CONDITION'])} and {len(entry['CONDITIONAL_OUTPUT'])})")
        # successors: tensor consumers, plus TRIP_LIMIT -> its LOOP_OUTPUTs and CONDITION -> its outputs
        self.succ: list[set[int]] = [set() for _ in range(n)]
        self.pred: list[set[int]] = [set() for _ in range(n)]
        for i, (_, layer) in enumerate(layers):
            for x in _inputs(layer):
                if x is not None and x.name in self.producer:
                    self._edge(self.producer[x.name], i)
        for entry in self.loops.values():
            for t in entry["TRIP_LIMIT"]:
                for o in entry["LOOP_OUTPUT"]:
                    self._edge(t, o)
        for entry in self.conds.values():
            for o in entry["CONDITIONAL_OUTPUT"]:
                self._edge(entry["CONDITION"][0], o)
        self.network_outputs = network_outputs
        self.live = self._live()
        self.dep = {key: self._loop_interior(key) for key in self.loops}
        self.branch = {(key, s): self._branch(key, s) for key in self.conds for s in (0, 1)}
        self._home_memo: dict[tuple, tuple] = {}
        self._depth_memo: dict[tuple, int] = {}

    def _edge(self, a: int, b: int) -> None:
        self.succ[a].add(b)
        self.pred[b].add(a)

    def name(self, i: int) -> str:
        return self.layers[i][1].name

    def _live(self) -> set[int]:
        """Layers a network output depends on; the others are dead ends (an unused module output,
        an assertion) and never decide where the layers they read from run."""
        todo = [self.producer[n] for n in self.network_outputs if n in self.producer]
        live = set(todo)
        while todo:
            for p in self.pred[todo.pop()]:
                if p not in live:
                    live.add(p)
                    todo.append(p)
        return live

    def _loop_interior(self, key: int) -> set[int]:
        """Layers that depend on the loop's iterators or recurrences (its boundary layers included)."""
        entry = self.loops[key]
        stop = set(entry["LOOP_OUTPUT"])  # their outputs are outside the loop
        todo = entry["ITERATOR"] + entry["RECURRENCE"]
        seen = set(todo) | set(entry["TRIP_LIMIT"]) | stop
        while todo:
            i = todo.pop()
            if i in stop:
                continue
            for j in self.succ[i]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return seen

    def _branch(self, key: int, side: int) -> set[int]:
        """Layers only branch `side` of the conditional uses: the greatest set whose every live
        user is in the set or reads it as input `side` of one of the conditional's outputs."""
        entry = self.conds[key]
        outs = set(entry["CONDITIONAL_OUTPUT"])
        boundary = outs | set(entry["CONDITION"])
        todo = []
        for o in outs:
            x = self.layers[o][1].get_input(side)
            if x is not None and x.name in self.producer:
                todo.append(self.producer[x.name])
        cand = {i for i in todo if i not in boundary}
        todo = list(cand)
        while todo:
            for p in self.pred[todo.pop()]:
                if p not in cand and p not in boundary:
                    cand.add(p)
                    todo.append(p)

        def used_only_inside(i: int) -> bool:
            if not self.succ[i] and i not in self.live:
                return False  # a dead end (an assertion) runs where its inputs are computed
            names = set(_outputs(self.layers[i][1]))
            if names & self.network_outputs:
                return False
            for j in self.succ[i]:
                if j in cand or (j not in self.live and j not in self.owner):
                    continue
                if j in outs:
                    reads = [x.name if x is not None else None for x in _inputs(self.layers[j][1])]
                    if not any(r in names for k, r in enumerate(reads) if k != side):
                        continue
                return False
            return True

        work = list(cand)  # removing a layer can only disqualify what it reads from
        while work:
            i = work.pop()
            if i in cand and not used_only_inside(i):
                cand.discard(i)
                work.extend(p for p in self.pred[i] if p in cand)
        return cand

    # ---- the region tree --------------------------------------------------------------------------
    def _compound_candidates(self, ckind: str, key: int) -> set[tuple]:
        entry = self.loops[key] if ckind == "loop" else self.conds[key]
        kinds = LOOP_KINDS if ckind == "loop" else CONDITIONAL_KINDS
        anchors = [i for k in kinds for i in entry[k]]
        outs = entry["LOOP_OUTPUT" if ckind == "loop" else "CONDITIONAL_OUTPUT"]
        cands = {("loop", q) for q, dep in self.dep.items()
                 if not (ckind == "loop" and q == key) and any(a in dep for a in anchors)}
        cands |= {("branch", q, s) for (q, s), members in self.branch.items()
                  if not (ckind == "cond" and q == key) and outs and all(o in members for o in outs)}
        return cands

    def compound_home(self, ckind: str, key: int, visiting: frozenset = frozenset()) -> tuple:
        """The region a loop or conditional runs in (the deepest one containing it)."""
        memo = (ckind, key)
        if memo in self._home_memo:
            return self._home_memo[memo]
        if memo in visiting:
            entry = self.loops[key] if ckind == "loop" else self.conds[key]
            raise RunnerError(f"{'loop' if ckind == 'loop' else 'conditional'} {entry['obj'].name!r} is nested "
                              "inside itself through another loop or conditional")
        home = self._deepest(self._compound_candidates(ckind, key), visiting | {memo},
                             f"{'loop' if ckind == 'loop' else 'conditional'} "
                             f"{(self.loops if ckind == 'loop' else self.conds)[key]['obj'].name!r}")
        self._home_memo[memo] = home
        return home

    def _region_parent(self, region: tuple, visiting: frozenset) -> tuple | None:
        """Parent in the region tree: a loop's home; a branch's conditional's home (one level up)."""
        if region == ROOT:
            return None
        if region[0] == "loop":
            return self.compound_home("loop", region[1], visiting)
        return self.compound_home("cond", region[1], visiting)

    def depth(self, region: tuple, visiting: frozenset = frozenset()) -> int:
        if region not in self._depth_memo:
            up = self._region_parent(region, visiting)
            self._depth_memo[region] = 0 if up is None else self.depth(up, visiting) + 1
        return self._depth_memo[region]

    def ancestors(self, region: tuple, visiting: frozenset = frozenset()) -> list[tuple]:
        chain = [region]
        while (up := self._region_parent(chain[-1], visiting)) is not None:
            chain.append(up)
        return chain

    def _deepest(self, cands: set[tuple], visiting: frozenset, what: str) -> tuple:
        if not cands:
            return ROOT
        best = max(cands, key=lambda r: (self.depth(r, visiting), r))
        chain = self.ancestors(best, visiting)
        stray = [r for r in cands if r not in chain]
        if stray:
            raise RunnerError(f"{what} reads values from two loops or branches that are not nested: "
                              f"{self.describe(best)} and {self.describe(stray[0])}")
        return best

    def describe(self, region: tuple) -> str:
        if region == ROOT:
            return "the top level"
        if region[0] == "loop":
            return f"loop {self.loops[region[1]]['obj'].name!r}"
        return (f"the {'true' if region[2] == 0 else 'false'} branch of conditional "
                f"{self.conds[region[1]]['obj'].name!r}")

    def layer_home(self, i: int, visiting: frozenset = frozenset()) -> tuple:
        """The region an ordinary layer runs in."""
        if ("layer", i) in self._home_memo:
            return self._home_memo[("layer", i)]
        cands = {("loop", q) for q, dep in self.dep.items() if i in dep}
        cands |= {("branch", q, s) for (q, s), members in self.branch.items() if i in members}
        if i not in self.live:  # a dead end runs where what it reads is computed
            if ("layer", i) in visiting:
                raise RunnerError(f"the network has a cycle through layer {self.name(i)!r}")
            for p in self.pred[i]:
                cands.add(self.output_region(p, visiting | {("layer", i)}))
            cands.discard(ROOT)
        home = self._deepest(cands, visiting, f"layer {self.name(i)!r}")
        self._home_memo[("layer", i)] = home
        return home

    def output_region(self, i: int, visiting: frozenset = frozenset()) -> tuple:
        """Where layer i's outputs are visible: inside the loop for iterators and recurrences,
        in the compound's home for loop and conditional outputs."""
        owner = self.owner.get(i)
        if owner is None:
            return self.layer_home(i, visiting)
        kind = self.layers[i][0]
        if kind in ("ITERATOR", "RECURRENCE"):
            return ("loop", owner[1])
        return self.compound_home(*owner, visiting)

    def input_region(self, i: int, k: int) -> tuple:
        """Where input k of layer i is read: a boundary layer reads its loop-side inputs inside the
        loop (RECURRENCE's next value, LOOP_OUTPUT's value, a WHILE condition), a branch value inside
        the branch, everything else in the compound's home."""
        owner = self.owner.get(i)
        if owner is None:
            return self.layer_home(i)
        kind, layer = self.layers[i]
        if owner[0] == "loop":
            inside = ((kind == "RECURRENCE" and k == 1) or (kind == "LOOP_OUTPUT" and k == 0)
                      or (kind == "TRIP_LIMIT" and layer.kind.name == "WHILE"))
            return ("loop", owner[1]) if inside else self.compound_home(*owner)
        if kind == "CONDITIONAL_OUTPUT":
            return ("branch", owner[1], k)
        return self.compound_home(*owner)

    def check_reads(self) -> None:
        """Every tensor is read in the region that computes it or in one nested inside it, and every
        network output is computed at the top level."""
        for i, (_, layer) in enumerate(self.layers):
            for k, x in enumerate(_inputs(layer)):
                if x is None or x.name not in self.producer:
                    continue
                made = self.output_region(self.producer[x.name])
                where = self.input_region(i, k)
                if made not in self.ancestors(where):
                    leave = ("a value leaves a loop only through a LOOP_OUTPUT layer" if made[0] == "loop"
                             else "a value leaves a conditional only through a CONDITIONAL_OUTPUT layer")
                    raise RunnerError(f"layer {layer.name!r} reads tensor {x.name!r}, which is computed inside "
                                      f"{self.describe(made)}; {leave}")
        for name in sorted(self.network_outputs):
            if name in self.producer and (made := self.output_region(self.producer[name])) != ROOT:
                raise RunnerError(f"network output {name!r} is computed inside {self.describe(made)}, where "
                                  "TensorRT does not allow a network output; take it out through the "
                                  f"{'loop' if made[0] == 'loop' else 'conditional'}'s outputs")

    def tree(self) -> Region:
        self.check_reads()
        regions: dict[tuple, Region] = {ROOT: Region()}
        nodes: dict[tuple, Any] = {}
        for key, entry in sorted(self.loops.items(), key=lambda kv: kv[1]["first"]):
            node = LoopNode(entry["obj"].name, *([self.layers[i][1] for i in entry[k]] for k in
                                                 ("TRIP_LIMIT", "ITERATOR", "RECURRENCE", "LOOP_OUTPUT")),
                            first=entry["first"])
            nodes[("loop", key)] = node
            regions[("loop", key)] = node.body
        for key, entry in sorted(self.conds.items(), key=lambda kv: kv[1]["first"]):
            node = CondNode(entry["obj"].name, self.layers[entry["CONDITION"][0]][1],
                            [self.layers[i][1] for i in entry["CONDITIONAL_OUTPUT"]], first=entry["first"])
            nodes[("cond", key)] = node
            regions[("branch", key, 0)], regions[("branch", key, 1)] = node.branches
        for (ckind, key), node in nodes.items():
            home = regions[self.compound_home(ckind, key)]
            (home.loops if ckind == "loop" else home.conditionals).append(node)
        for i, (kind, layer) in enumerate(self.layers):
            if i not in self.owner:
                regions[self.layer_home(i)].layers.append((kind, layer))
        return regions[ROOT]
