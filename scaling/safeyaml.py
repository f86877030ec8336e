"""YAML read with a bound on what its aliases expand to: configs, sweep specs and run records come from
users and from disk, and a few lines of aliases must not stand for a billion values."""
from __future__ import annotations

import yaml

# YAML's aliases share one node however often they are used, so a few lines can stand for a billion
# values ("billion laughs") that the first walk over them (validation, json.dumps, an error's repr)
# expands. Far above any config or spec a person writes: 10,000 sweep points of a few keys each.
MAX_YAML_NODES = 200_000


class YamlTooLarge(yaml.YAMLError):
    """The document stands for more than MAX_YAML_NODES values once its aliases are expanded (or refers
    to itself)."""


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that counts a document's values, aliases expanded, before it builds any of them."""

    def construct_document(self, node):
        _check_expanded_size(node)
        return super().construct_document(node)


def _check_expanded_size(root) -> None:
    sizes: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
    path: set[int] = set()      # nodes entered and not yet finished: the current node's ancestors
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = [c for pair in node.value for c in (pair if isinstance(pair, tuple) else (pair,))] \
            if isinstance(node, yaml.CollectionNode) else []
        if finished:
            path.discard(id(node))
            sizes[id(node)] = size = 1 + sum(sizes[id(c)] for c in children)
            if size > MAX_YAML_NODES:
                raise YamlTooLarge(f"its aliases expand to more than {MAX_YAML_NODES:,} values")
        elif id(node) in path:
            raise YamlTooLarge("an alias refers to a value that contains it")
        elif id(node) not in sizes:
            path.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)


def safe_load(stream):
    """yaml.safe_load, refusing (YamlTooLarge) a document whose aliases expand past MAX_YAML_NODES."""
    loader = _BoundedLoader(stream)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
