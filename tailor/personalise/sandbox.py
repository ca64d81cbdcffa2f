"""The one Jinja environment templates are checked and rendered in, and the check itself.

Template sources come from tenants' marketers, so they are untrusted code. Jinja's sandbox
already refuses attributes that reach Python internals at render time; on top of it:

- ``unsafe_reference`` refuses, when a template version is created, any source that names such
  an attribute outright (``''.__class__``, ``cycler.__init__.__globals__``, ``x|attr('_y')``),
  so the author hears about it with a 422 instead of every recipient falling back later;
- ``TemplateSandbox`` bounds ``**`` and ``*``, which the plain sandbox lets run (``2**10**8``
  takes seconds, ``'x' * 10**10`` exhausts memory) and would even fold at compile time.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

MAX_BITS = 16_384  # about 5,000 digits: past Python's 4,300-digit limit for printing an int
MAX_REPEAT = 100_000  # characters or items a ``*`` may build


class TemplateSandbox(SandboxedEnvironment):
    """Jinja's sandbox with ``**`` and ``*`` bounded in what they build."""

    # Intercepted operators are also never constant-folded at compile time.
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if _int(left) and _int(right):
            if operator == "**" and abs(left) > 1 and right * abs(left).bit_length() > MAX_BITS:
                raise SecurityError(f"a power of more than {MAX_BITS} bits")
            if operator == "*" and left.bit_length() + right.bit_length() > MAX_BITS:
                raise SecurityError(f"a product of more than {MAX_BITS} bits")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and _int(times):
                    if len(seq) * times > MAX_REPEAT:
                        raise SecurityError(f"a repetition longer than {MAX_REPEAT}")
        return super().call_binop(context, operator, left, right)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def unsafe_reference(env: SandboxedEnvironment, source: str) -> str | None:
    """Why ``source`` must not be stored (an attribute of Python internals), or None.

    Raises ``TemplateSyntaxError`` for a source that does not parse."""
    for node in env.parse(source).find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            name = first.value if isinstance(first, nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            return f"{name!r} reaches into Python internals; templates may not use it"
    return None


__all__ = ["TemplateSandbox", "TemplateSyntaxError", "unsafe_reference"]
