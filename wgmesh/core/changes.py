"""The changes of a plan, as Terraform shows them: an action on a resource, with attributes before and after."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPLACE = "replace"  # a peer whose public key changed (a rotation): counted as one add and one destroy

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "delete": "-", "replace": "-/+"}[self.value]


Value = str | int | bool | list[str] | None


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str  # "interface" | "peer" | "route"
    name: str
    before: Mapping[str, Value] | None = None
    after: Mapping[str, Value] | None = None

    @property
    def address(self) -> str:
        return f"{self.kind} {self.name}"

    def changed_attributes(self) -> list[tuple[str, Value, Value]]:
        """(attribute, before, after) for every attribute that differs (all of them for create/delete)."""
        before = self.before or {}
        after = self.after or {}
        keys = list(after) + [k for k in before if k not in after]
        return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]

    def unchanged_count(self) -> int:
        if self.action not in (Action.UPDATE, Action.REPLACE) or not self.before or not self.after:
            return 0
        return sum(1 for k in self.after if k in self.before and self.before[k] == self.after[k])
