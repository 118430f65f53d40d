"""The policies, in the order mutations compose (each mutator sees the previous one's output)."""

from __future__ import annotations

from policies import (
    availability,
    force_delete,
    guard_exception,
    headless_service,
    pvc_protection,
    quorum,
    server_id,
    shared_volume,
    stateful_practices,
    storage_class,
)
from policies.base import Policy

POLICIES: tuple[Policy, ...] = (
    headless_service.POLICY,
    storage_class.POLICY,
    server_id.POLICY,
    force_delete.POLICY,
    pvc_protection.POLICY,
    quorum.POLICY,
    shared_volume.POLICY,
    stateful_practices.POLICY,
    availability.POLICY,
    guard_exception.POLICY,
)
POLICY_IDS: tuple[str, ...] = tuple(p.id for p in POLICIES)
BY_ID: dict[str, Policy] = {p.id: p for p in POLICIES}
