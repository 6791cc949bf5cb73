"""A render budget for Jinja2 sandboxes: titles and messages are written by rule authors, but
their values come from alert labels and annotations, which anyone who can create an alert
writes. ``'x' * (labels.n|int)`` or ``'%*s' % (annotations.width|int, '')`` must not let a label
size an allocation, and no loop may run long enough to hold up the process.

``BoundedSandbox`` refuses, *before* it allocates, any value a template builds that is longer than
``max_size`` (string and list repetition, ``%`` and ``str.format`` widths, ``center``/``indent``
and friends, ``replace``/``join`` results, ``range``), counts loop iterations, calls and attribute
look-ups against ``max_steps`` and a wall-clock deadline; ``render_stream`` stops collecting
output past its ``limit``. A refusal is a ``RenderBudgetExceeded`` (a ``SecurityError``): callers already
treat a template that raises as a render error with a fallback.
"""

from __future__ import annotations

import re
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import update_wrapper
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter, safe_range
from markupsafe import EscapeFormatter, Markup

from bridge.delivery.markup import ELLIPSIS

TITLE_MAX = 500  # characters of an incident title (a longer one is cut, ending in ELLIPSIS)
MESSAGE_MAX = 40_000  # characters of a rendered message body (targets cut further to their API)

_INT_BITS_MAX = 4096  # an integer a template computes: larger is a refusal (2 ** 10 ** 9)


class RenderBudgetExceeded(SecurityError):
    """A template tried to build something larger, or run longer, than its budget."""


@dataclass
class Budget:
    """What one render may spend. Steps: loop iterations, calls, attribute look-ups."""

    max_size: int = 100_000
    max_steps: int = 50_000
    time_s: float = 0.5
    steps: int = 0
    deadline: float = field(default=0.0)

    def start(self) -> Budget:
        return Budget(self.max_size, self.max_steps, self.time_s, 0, time.monotonic() + self.time_s)

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.max_steps:
            raise RenderBudgetExceeded(f"more than {self.max_steps} steps (loops, calls)")
        if self.steps & 0xFF == 0 and time.monotonic() > self.deadline:
            raise RenderBudgetExceeded(f"took longer than {self.time_s:g} s")

    def size(self, n: int, what: str) -> None:
        if n > self.max_size:
            raise RenderBudgetExceeded(f"{what} of {n} items is over the limit of {self.max_size}")


_CURRENT: ContextVar[Budget | None] = ContextVar("render_budget", default=None)


class _SizesOnly(Budget):
    """Outside a budget's scope: sizes are bounded, generously; steps and time are not counted
    (one shared instance, nothing allocated per operation)."""

    def step(self, n: int = 1) -> None:
        return None


_UNSCOPED = _SizesOnly(max_size=10_000_000)


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set) else 0


def cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters, ending in an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


# printf-style conversions: %(name)s, flags, width (digits or *), precision (digits or *)
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_SPEC_NUMBERS = re.compile(r"\d+")


def _printf_size(fmt: str, args: Any) -> int:
    """An upper bound on the widths and precisions ``fmt % args`` asks for."""
    values = list(args) if isinstance(args, tuple) else [args]
    ints = [v for v in values if isinstance(v, int)]
    total = len(fmt)
    for m in _PRINTF.finditer(fmt):
        for part in m.group(1, 2):
            if part == "*":
                total += max(ints, default=0)
            elif part:
                total += int(part)
        total += sum(_sized(v) for v in values)
    return total


class _BoundedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, refusing a field whose width or precision is too large."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = _budget()
        for number in _SPEC_NUMBERS.findall(format_spec):
            budget.size(int(number), "format width")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


def _budget() -> Budget:
    current = _CURRENT.get()
    # A render outside render_stream/with_budget (the postmortem's Markdown, whose whole output
    # goes through concat): sizes are still bounded, generously.
    return current if current is not None else _UNSCOPED


def _check_binop(op: str, left: Any, right: Any) -> None:
    budget = _budget()
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(n, int) and _sized(seq):
                budget.size(_sized(seq) * max(n, 0), "repetition")
        both_ints = isinstance(left, int) and isinstance(right, int)
        if both_ints and left.bit_length() + right.bit_length() > _INT_BITS_MAX:
            raise RenderBudgetExceeded("integer product too large")
    elif op == "**":
        ints = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
        if ints and right > 0 and left.bit_length() * right > _INT_BITS_MAX:
            raise RenderBudgetExceeded("integer power too large")
    elif op == "%" and isinstance(left, str):
        budget.size(_printf_size(left, right), "formatted string")
    elif op == "+":
        budget.size(_sized(left) + _sized(right), "concatenation")


_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill"}


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse the str methods whose result a small argument can make huge."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    budget = _budget()
    if isinstance(owner, str):
        if name in _WIDTH_METHODS and args and isinstance(args[0], int):
            budget.size(args[0], f"str.{name} width")
        elif name == "expandtabs":
            tab = args[0] if args and isinstance(args[0], int) else 8
            budget.size(len(owner) + owner.count("\t") * tab, "str.expandtabs")
        elif name == "replace" and len(args) >= 2:
            budget.size(_replaced_size(owner, args[0], args[1]), "str.replace result")
        elif name == "join" and args:
            budget.size(_joined_size(owner, args[0]), "str.join result")


def _replaced_size(text: Any, old: Any, new: Any) -> int:
    text, old, new = str(text), str(old), str(new)
    count = text.count(old) if old else len(text) + 1
    return len(text) + count * max(len(new) - len(old), 0)


def _joined_size(sep: Any, items: Any) -> int:
    if not isinstance(items, list | tuple):
        return 0  # a generator: the result is checked after
    return sum(len(str(i)) for i in items) + len(str(sep)) * max(len(items) - 1, 0)


def _checked(value: Any, what: str) -> Any:
    budget = _budget()
    budget.size(_sized(value), what)
    return value


def _bound_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose integer arguments (widths, counts) and result are within the budget."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        plain = [a for a in (*args, *kwargs.values()) if not isinstance(a, Context)]
        for a in plain[1:]:
            if isinstance(a, int) and not isinstance(a, bool):
                budget.size(a, f"{name} argument")
        if name in ("center", "indent") and plain:
            width = next((a for a in plain[1:] if isinstance(a, int)), 4)
            lines = str(plain[0]).count("\n") + 1
            budget.size(len(str(plain[0])) + width * lines, f"{name} result")
        elif name == "replace" and len(plain) >= 3:
            budget.size(_replaced_size(*plain[:3]), "replace result")
        elif name == "join" and plain:
            sep = plain[1] if len(plain) > 1 else ""
            budget.size(_joined_size(sep, plain[0]), "join result")
        elif name == "format" and plain and isinstance(plain[0], str):
            budget.size(_printf_size(plain[0], tuple(plain[1:])), "format result")
        return _checked(fn(*args, **kwargs), f"{name} result")

    for attr in ("jinja_pass_arg",):  # keep @pass_context & co.
        if hasattr(fn, attr):
            setattr(bounded, attr, getattr(fn, attr))
    bounded.__name__ = getattr(fn, "__name__", name)
    return bounded


def _iterate(items: Iterable[Any]) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: each iteration is a step."""
    budget = _budget()
    for item in items:
        budget.step()
        yield item


def _range(*args: int) -> range:
    rng = safe_range(*args)  # Jinja's own limit first (OverflowError: Range too big.)
    _budget().size(len(rng), "range")
    return rng


class BoundedSandbox(SandboxedEnvironment):
    """A ``SandboxedEnvironment`` that renders within a ``Budget`` (see the module's doc)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = _range
        self.filters["_bounded_iter"] = _iterate
        self.concat = self._concat  # type: ignore[method-assign]

    def bound_filters(self) -> None:
        """Wrap every filter (call again after adding filters)."""
        for name, fn in list(self.filters.items()):
            if name != "_bounded_iter" and not getattr(fn, "_bounded", False):
                wrapped = _bound_filter(name, fn)
                wrapped._bounded = True  # type: ignore[attr-defined]
                self.filters[name] = wrapped

    @staticmethod
    def _concat(parts: Iterable[str]) -> str:
        items = list(parts)
        _budget().size(sum(len(p) for p in items), "text block")
        return "".join(items)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_bounded_iter", [], [], None, None,
                                     lineno=loop.iter.lineno)  # fmt: skip
        return tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _budget().step()
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().step()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format``/``format_map`` through a formatter that refuses huge widths."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        formatter: SandboxedFormatter
        if isinstance(owner, Markup):
            formatter = _BoundedEscapeFormatter(self, escape=owner.escape)
        else:
            formatter = _BoundedFormatter(self)
        is_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return _checked(type(owner)(formatter.vformat(owner, args, kwargs)), "formatted string")  # type: ignore[no-any-return]

        return update_wrapper(wrapper, value)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget().step()
        _check_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, list | dict | set):  # list.extend(list) doubles it
            _checked(owner, "collection")
        return _checked(result, "call result")


def render_stream(
    chunks: Iterable[str], budget: Budget, *, limit: int, started: bool = False
) -> tuple[str, bool]:
    """Collect a template's output (``template.generate``, ``root_render_func``) within
    ``budget`` (a fresh start of it, or ``budget`` itself when ``started``, so that the
    caller reads what was spent): at most ``limit`` characters are kept; returns (text, cut
    short)."""
    token = _CURRENT.set(budget if started else budget.start())
    try:
        out: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                out.append(chunk[: len(chunk) - (size - limit)])
                return "".join(out), True
            out.append(chunk)
        return "".join(out), False
    finally:
        _CURRENT.reset(token)


def with_budget(budget: Budget) -> Any:
    """``with with_budget(b): ...``: renders in the block spend ``b`` (a fresh start of it)."""
    return _Scope(budget)


class _Scope:
    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.token: Any = None

    def __enter__(self) -> Budget:
        started = self.budget.start()
        self.token = _CURRENT.set(started)
        return started

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self.token)


__all__ = [
    "ELLIPSIS",
    "MESSAGE_MAX",
    "TITLE_MAX",
    "BoundedSandbox",
    "Budget",
    "RenderBudgetExceeded",
    "cut",
    "render_stream",
    "with_budget",
]
