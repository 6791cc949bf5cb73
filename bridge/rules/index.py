"""Which children of a route can match a label set, in a few dict lookups.

A route's children are tried in order (first match wins unless ``continue``). Scanning them
costs one matcher evaluation per child; with a thousand sibling routes that dominates. Instead,
for every label name the children's matchers use, the set of children whose matchers on that
name accept a value is computed once per distinct value and kept as a bitmask; the children that
match a label set are the AND of those masks. Label values repeat (the same alerts arrive again
and again), so the memo answers almost every lookup. It is bounded, and only an optimisation:
the result is exactly that of evaluating every matcher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge.rules.matchers import Matcher

MEMO_LIMIT = 20_000  # values remembered per label name and sibling list


class ChildIndex:
    __slots__ = ("by_name", "free", "full", "memo", "names")

    def __init__(self, matchers: Sequence[tuple[Matcher, ...]]) -> None:
        self.full = (1 << len(matchers)) - 1
        names = sorted({m.name for ms in matchers for m in ms})
        self.names = tuple(names)
        self.by_name: dict[str, list[tuple[int, tuple[Matcher, ...]]]] = {}
        self.free: dict[str, int] = {}  # children with no matcher on this name
        for name in names:
            entries = []
            free = 0
            for i, ms in enumerate(matchers):
                mine = tuple(m for m in ms if m.name == name)
                if mine:
                    entries.append((1 << i, mine))
                else:
                    free |= 1 << i
            self.by_name[name] = entries
            self.free[name] = free
        self.memo: dict[str, dict[str, int]] = {name: {} for name in names}

    def candidates(self, labels: Mapping[str, str]) -> int:
        """Bitmask of the children whose matchers all match ``labels`` (bit i = child i)."""
        mask = self.full
        for name in self.names:
            value = labels.get(name, "")
            memo = self.memo[name]
            bits = memo.get(value)
            if bits is None:
                bits = self.free[name]
                for bit, ms in self.by_name[name]:
                    if all(m.matches(value) for m in ms):
                        bits |= bit
                if len(memo) >= MEMO_LIMIT:
                    memo.clear()
                memo[value] = bits
            mask &= bits
            if not mask:
                break
        return mask
