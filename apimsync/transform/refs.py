"""``$ref`` links between component schemas: which schemas sit on a cycle (APIM imports no recursive schema) and
which references close one. One walker finds the references, for the linter and for the step that cuts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "#/components/schemas/"
_VALUES = ("example", "default", "enum", "examples", "const")  # keywords whose values are data, not schemas
_NAME_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def schema_refs(schemas: Mapping[str, Any], name: str) -> list[tuple[dict[str, Any], str]]:
    """(node, target) for every ``$ref`` to a component schema inside schema ``name`` (values, like examples, are
    not schemas; a property may still be *named* "example")."""
    found: list[tuple[dict[str, Any], str]] = []
    stack: list[tuple[Any, bool]] = [(schemas.get(name), False)]  # (node, is a map of names to schemas)
    while stack:
        node, named = stack.pop()
        if isinstance(node, list):
            stack.extend((v, False) for v in node)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if not named and isinstance(ref, str) and ref.startswith(PREFIX) and ref[len(PREFIX):] in schemas:
                found.append((node, ref[len(PREFIX):]))
            stack.extend((v, not named and k in _NAME_MAPS) for k, v in node.items() if named or k not in _VALUES)
    return found


def on_cycles(schemas: Mapping[str, Any]) -> set[str]:
    """The component schemas on a ``$ref`` cycle."""
    return cyclic({name: {target for _, target in schema_refs(schemas, name)} for name in schemas})


def closing_refs(schemas: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The references that close a cycle, walking depth first from each schema in order: cutting them leaves no
    cycle, and each cycle loses one reference."""
    out: list[tuple[dict[str, Any], str]] = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    for root in list(schemas):
        if root in state:
            continue
        state[root] = 1
        path = [(root, iter(schema_refs(schemas, root)))]  # a depth-first walk without recursion: chains may be long
        while path:
            name, pending = path[-1]
            edge = next(pending, None)
            if edge is None:
                state[name] = 2
                path.pop()
                continue
            _node, target = edge
            if state.get(target) == 1:
                out.append(edge)
            elif target not in state:
                state[target] = 1
                path.append((target, iter(schema_refs(schemas, target))))
    return out


def cyclic(graph: Mapping[str, set[str]]) -> set[str]:
    """Nodes on a cycle: members of a strongly connected component of two or more, or with a self-loop.

    Tarjan's algorithm, iterative: linear in nodes + edges, so a 10,000-link $ref chain costs no more than its
    length (a search from every node would cost its square)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: set[str] = set()
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.update(component)
    return found
