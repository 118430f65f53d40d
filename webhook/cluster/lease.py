"""Leader election through a coordination.k8s.io Lease, for background work that must run
once per cluster (the managed-Service reconcile), however many replicas serve requests.

A replica leads while it holds the Lease and renews it every `renew` seconds; another takes
over once `duration` seconds pass without a renewal. Updates carry the resourceVersion they
read, so two replicas never both win.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from kubernetes import client as k8s

log = logging.getLogger("stateful_guard.lease")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseElector:
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        namespace: str,
        identity: str,
        name: str = "stateful-guard",
        duration: int = 30,
        renew: float = 10,
    ) -> None:
        self.leases = k8s.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew = duration, renew
        self.leading = False

    def _lease(
        self, transitions: int, acquired: dt.datetime, version: str | None = None
    ) -> k8s.V1Lease:
        return k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=self.name, resource_version=version),
            spec=k8s.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.duration,
                acquire_time=acquired,
                renew_time=_now(),
                lease_transitions=transitions,
            ),
        )

    def try_acquire_or_renew(self) -> bool:
        """One round; blocking. True when this replica holds the Lease afterwards."""
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            try:
                self.leases.create_namespaced_lease(self.namespace, self._lease(0, _now()))
            except k8s.ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        spec = lease.spec or k8s.V1LeaseSpec()
        holder = spec.holder_identity or ""
        duration = dt.timedelta(seconds=spec.lease_duration_seconds or self.duration)
        expired = spec.renew_time is None or spec.renew_time + duration < _now()
        if holder and holder != self.identity and not expired:
            return False
        mine = holder == self.identity
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        acquired = spec.acquire_time if mine and spec.acquire_time else _now()
        version = lease.metadata.resource_version if lease.metadata else None
        try:
            self.leases.replace_namespaced_lease(
                self.name, self.namespace, self._lease(transitions, acquired, version)
            )
        except k8s.ApiException as exc:
            if exc.status == 409:
                return False  # another replica renewed or took it first
            raise
        return True

    def release(self) -> None:
        """Give the Lease up (holder cleared, already expired), so that another replica takes
        over at its next round instead of `duration` seconds later: a rolling upgrade
        replaces the leader every time. Blocking; a lost race or an error changes nothing."""
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = _now() - dt.timedelta(seconds=2)
            self.leases.replace_namespaced_lease(self.name, self.namespace, lease)
            log.info("lease released", extra={"lease": self.name})
        except Exception as exc:
            log.warning("lease release: %s", exc)

    async def run(self) -> None:
        try:
            while True:
                try:
                    leading = await asyncio.to_thread(self.try_acquire_or_renew)
                except Exception as exc:  # an unreachable API server: not leading
                    log.warning("lease: %s", exc)
                    leading = False
                if leading != self.leading:
                    log.info("leadership changed", extra={"leading": leading, "lease": self.name})
                self.leading = leading
                await asyncio.sleep(self.renew)
        except asyncio.CancelledError:  # shutting down
            if self.leading:
                self.leading = False
                await asyncio.shield(asyncio.to_thread(self.release))
            raise

    async def while_leading(
        self, interval: float, work: Callable[[], list[str]], *, what: str
    ) -> None:
        """Every `interval` seconds, on the leader only, run `work` (blocking, so in a thread)
        and log what it did; a failure is logged and the next round tries again."""
        await periodically(interval, work, what=what, when=lambda: self.leading)


async def periodically(
    interval: float,
    work: Callable[[], list[str]],
    *,
    what: str,
    when: Callable[[], bool] = lambda: True,
) -> None:
    """Every `interval` seconds, while `when()` holds, run `work` (blocking, so in a thread)
    and log what it did; a failure is logged and the next round tries again."""
    while True:
        await asyncio.sleep(interval)
        if not when():
            continue
        try:
            done = await asyncio.to_thread(work)
        except Exception as exc:  # retried next round
            log.warning("%s failed: %s", what, exc)
            continue
        for line in done:
            log.info(line, extra={"job": what})
