"""The domain graph: domains as nodes, prerequisites (`after`) as edges ``prereq -> domain``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx


def prerequisite_graph(after: Mapping[str, Iterable[str]]) -> nx.DiGraph:
    """DiGraph with one node per domain and an edge ``p -> d`` for each prerequisite p of d."""
    graph = nx.DiGraph()
    graph.add_nodes_from(after)
    for domain, prereqs in after.items():
        graph.add_edges_from((p, domain) for p in prereqs)
    return graph


def find_cycle(after: Mapping[str, Iterable[str]]) -> list[str]:
    """Domains on one prerequisite cycle, in order (empty when the graph is acyclic)."""
    try:
        edges = nx.find_cycle(prerequisite_graph(after))
    except nx.NetworkXNoCycle:
        return []
    return [u for u, _ in edges]


def build_domain_graph(
    domains: Iterable,
    scores: Mapping[str, float] | None = None,
    entropy: Mapping[str, float] | None = None,
    transfer: Mapping[str, Mapping[str, float]] | None = None,
    threshold: float = 0.05,
) -> nx.DiGraph:
    """Domain graph: nodes carry ``kind``, ``source`` and, when known, ``score`` and ``entropy``;
    prerequisite edges ``p -> d`` have ``kind="prerequisite"``; estimated transfer edges ``i -> j``
    (|T[i][j]| >= threshold, i != j) have ``kind="transfer"`` and ``weight=T[i][j]``."""
    domains = list(domains)
    graph = prerequisite_graph({d.name: d.after for d in domains})
    nx.set_edge_attributes(graph, "prerequisite", "kind")
    for d in domains:
        graph.nodes[d.name].update(kind=d.kind, source=d.source.describe())
        if scores and d.name in scores:
            graph.nodes[d.name]["score"] = scores[d.name]
        if entropy and d.name in entropy:
            graph.nodes[d.name]["entropy"] = entropy[d.name]
    for i, row in (transfer or {}).items():
        for j, t in row.items():
            if i != j and abs(t) >= threshold and not graph.has_edge(i, j):
                graph.add_edge(i, j, kind="transfer", weight=float(t))
    return graph


def to_dot(graph: nx.DiGraph) -> str:
    """Graphviz DOT text: structured domains as boxes, creative ones as ellipses."""
    lines = ["digraph domains {", "  rankdir=LR;"]
    for name, attrs in graph.nodes(data=True):
        shape = "box" if attrs.get("kind") == "structured" else "ellipse"
        score = f"\\nscore {attrs['score']:.2f}" if "score" in attrs else ""
        label = f"{name}\\n{attrs.get('kind', '')}{score}"
        lines.append(f'  "{name}" [shape={shape}, label="{label}"];')
    for u, v, attrs in graph.edges(data=True):
        if attrs.get("kind") == "transfer":
            color = "darkgreen" if attrs["weight"] > 0 else "red"
            lines.append(f'  "{u}" -> "{v}" [style=dashed, color={color}, label="{attrs["weight"]:+.2f}"];')
        else:
            lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    return "\n".join(lines)
