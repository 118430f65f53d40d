"""Leader election through a real Lease: one leader at a time, and a take-over on expiry."""

from __future__ import annotations

import time
import uuid

from tests.e2e.cluster import NAMESPACE, Cluster, Install
from webhook.cluster.lease import LeaseElector


def test_one_leader_and_take_over_after_expiry(cluster: Cluster, namespaced: Install) -> None:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    first = LeaseElector(
        cluster.api, namespace=NAMESPACE, identity="replica-a", name=name, duration=2
    )
    second = LeaseElector(
        cluster.api, namespace=NAMESPACE, identity="replica-b", name=name, duration=2
    )
    assert first.try_acquire_or_renew() is True
    assert second.try_acquire_or_renew() is False, "held and fresh: not taken"
    assert first.try_acquire_or_renew() is True, "the holder renews"
    time.sleep(2.5)  # replica-a stops renewing
    assert second.try_acquire_or_renew() is True, "expired: taken over"
    assert first.try_acquire_or_renew() is False
    lease = cluster.dynamic.resources.get(api_version="coordination.k8s.io/v1", kind="Lease").get(
        name=name, namespace=NAMESPACE
    )
    assert lease.spec.holderIdentity == "replica-b"
    assert lease.spec.leaseTransitions == 1


def test_a_released_lease_is_taken_at_once(cluster: Cluster, namespaced: Install) -> None:
    """A leader that stops (a rolling upgrade) hands over without waiting for expiry."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    first, second = (
        LeaseElector(cluster.api, namespace=NAMESPACE, identity=who, name=name, duration=30)
        for who in ("replica-a", "replica-b")
    )
    assert first.try_acquire_or_renew() is True
    assert second.try_acquire_or_renew() is False
    second.release()  # not the holder: changes nothing
    assert second.try_acquire_or_renew() is False
    first.release()
    assert second.try_acquire_or_renew() is True, "released: taken at once"
    assert first.try_acquire_or_renew() is False
