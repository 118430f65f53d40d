"""How strongly a policy acts, and what it does when it cannot decide: the two settings every
policy has, read by the config and applied by the engine."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How strongly a policy acts; ordered from weakest to strictest."""

    OFF = "off"
    AUDIT = "audit"
    WARN = "warn"
    ENFORCE = "enforce"

    @property
    def strictness(self) -> int:
        return _STRICTNESS[self]

    def capped_by(self, cap: Mode) -> Mode:
        """This mode, lowered to `cap` when the cap is weaker (a namespace's label)."""
        return self if self.strictness <= cap.strictness else cap


_STRICTNESS = {Mode.OFF: 0, Mode.AUDIT: 1, Mode.WARN: 2, Mode.ENFORCE: 3}


class FailureMode(StrEnum):
    """What happens when a policy cannot decide (it raised, or the cluster view lacks data)."""

    OPEN = "open"  # allow, and say so
    CLOSED = "closed"  # refuse: for operations that lose data
