"""The task graph: domains as nodes, prerequisites (`after`) as edges ``prereq -> domain``."""
from __future__ import annotations

from typing import Iterable, Mapping

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


def build_task_graph(domains: Iterable) -> nx.DiGraph:
    """Task graph of configured domains with node attributes ``kind`` and ``source``."""
    domains = list(domains)
    graph = prerequisite_graph({d.name: d.after for d in domains})
    for d in domains:
        graph.nodes[d.name].update(kind=d.kind, source=d.source.describe())
    return graph


def to_dot(graph: nx.DiGraph) -> str:
    """Graphviz DOT text: structured domains as boxes, creative ones as ellipses."""
    lines = ["digraph tasks {", "  rankdir=LR;"]
    for name, attrs in graph.nodes(data=True):
        shape = "box" if attrs.get("kind") == "structured" else "ellipse"
        label = f"{name}\\n{attrs.get('kind', '')}"
        lines.append(f'  "{name}" [shape={shape}, label="{label}"];')
    lines += [f'  "{u}" -> "{v}";' for u, v in graph.edges]
    lines.append("}")
    return "\n".join(lines)
