"""Where in a request body a problem is, named one way in every error answer: keys dotted,
list positions in brackets (`when[0].offset`, `action.content[1].meta`, `fields[2].type`)."""

from typing import Any


def _is_tag(part: str, node: Any) -> bool:
    """A location step pydantic adds that names no key of the input: a union member's tag
    (the value of its discriminator), its class name, or a validator wrapper."""
    if isinstance(node, dict) and part in node:
        return False
    tags = [v for v in node.values() if isinstance(v, str)] if isinstance(node, dict) else []
    return "[" in part or part[:1].isupper() or part in tags


def field_path(loc: tuple[int | str, ...], given: Any) -> str | None:
    """Where in the input `given` a validation error is, as every answer names it: keys
    dotted, list indices in brackets (`when[0].offset`, `action.settings.url`)."""
    path, node = "", given
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif not _is_tag(part, node):
            path += f".{part}" if path else part
            node = node.get(part) if isinstance(node, dict) else None
    return path or None
