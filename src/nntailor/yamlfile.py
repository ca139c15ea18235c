"""Read a user's YAML file safely, errors as one line. Every YAML nntailor reads goes through ``read_yaml``.

Beyond ``yaml.safe_load`` (no tags that build objects) the reader bounds what a file may cost: its size in
bytes, and the size of the document once its aliases are expanded (a "billion laughs" file is a few
hundred bytes whose aliases expand to 10^9 nodes; it hangs whatever walks or prints it). A key given twice
in one mapping is an error (YAML 1.2 requires keys to be unique; PyYAML silently keeps the last one).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nntailor.errors import UserError

MAX_BYTES = 1 << 20  # 1 MiB: a target or recipe is a few kB
MAX_NODES = 100_000  # nodes of the document with every alias expanded
MAX_ALIASES = 1_000  # alias uses (*name) in one file


class _Refused(Exception):
    """A bound of the reader broke; the message is the user's one line."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.node = node


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts alias uses, refuses duplicate keys, and refuses oversized expansions."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_uses = 0

    def compose_node(self, parent: Node | None, index: object) -> Node:
        if self.check_event(yaml.AliasEvent):
            self.alias_uses += 1
            if self.alias_uses > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _Refused(f"more than {MAX_ALIASES} aliases (line {mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_document(self, node: Node) -> object:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            _check_unique_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def _check_unique_keys(loader: _BoundedLoader, node: MappingNode) -> None:
    first_line: dict[object, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, ScalarNode):
            continue  # "<<" merges may be overridden by the mapping's own keys, as the merge spec says
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise _Refused(f"duplicate key {key!r} at line {line} (first at line {first_line[key]})", key_node)
        first_line[key] = line


def _check_expanded_size(root: Node) -> None:
    """Nodes of the document with aliases expanded, counted on the node graph (each node once, memoized)
    so that counting a bomb costs as little as reading it; a node that contains itself is refused too."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: a deeply nested file must not exhaust Python's stack here
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_NODES:
                raise _Refused(f"expands to more than {MAX_NODES:,} nodes (aliases nested in aliases)", node)
            continue
        if key in size:
            continue
        if key in on_path:  # on_path holds exactly the ancestors of the node being popped
            raise _Refused("an alias refers to a node that contains it (a recursive document)", node)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def read_yaml(path: str | Path, what: str) -> object:
    """The parsed document; ``what`` names the file in errors ("recipe", "target")."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # never more than the cap, whatever the file's size
    except OSError as err:
        raise UserError(f"{what} {path}: cannot read: {err.strerror or err}") from None
    if len(raw) > MAX_BYTES:
        raise UserError(f"{what} {path}: larger than {MAX_BYTES // 1024} KiB; a {what} file is a few kB of YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path}: not UTF-8 text (bad byte at offset {err.start}); expected YAML") from None
    if "\x00" in text:
        raise UserError(f"{what} {path}: holds NUL bytes; expected YAML text")
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as err:
        where = f" line {err.node.start_mark.line + 1}" if err.node is not None and "line" not in str(err) else ""
        raise UserError(f"{what} {path}{where}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(err, "problem", None) or err).splitlines()[0]
        raise UserError(f"{what} {path}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise UserError(f"{what} {path}: nested too deep to read") from None
    finally:
        loader.dispose()
