"""The policies, in the order mutations compose (each mutator sees the previous one's output)."""

from __future__ import annotations

from policies import force_delete, headless_service, storage_class
from policies.base import Policy

POLICIES: tuple[Policy, ...] = (
    headless_service.POLICY,
    storage_class.POLICY,
    force_delete.POLICY,
)
POLICY_IDS: tuple[str, ...] = tuple(p.id for p in POLICIES)
BY_ID: dict[str, Policy] = {p.id: p for p in POLICIES}
