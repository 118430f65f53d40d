"""Which StatefulSets are majority-quorum clusters, and how many members each must keep.

One place decides it; `quorum`, `stateful-practices` and the audits read it from here:
1. `stateful-guard.io/min-replicas: <n>`: a fixed minimum (the operator said so);
2. else `stateful-guard.io/quorum: majority | none | <n>` (`true` reads as `majority`);
3. else the system recognised from the pod template's images and the standard
   `app.kubernetes.io/name` label, without any annotation of ours (public charts carry none):
   ZooKeeper, etcd, Consul servers, Vault with integrated (raft) storage, Elasticsearch
   master-eligible nodes, Kafka KRaft controllers, MariaDB Galera, CockroachDB, NATS
   JetStream, RabbitMQ (quorum queues and Khepri);
4. else none: the set's replicas are independent (a primary and its read replicas, a cache).

A majority cluster of n members needs n // 2 + 1 of them to make progress: 3 keep working
with 1 down, 2 do not (so two members are no safer than one), and 4 tolerate no more than 3.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from policies.objects import (
    MANAGED_BY,
    SET_ANNOTATION,
    annotations_of,
    claim_templates,
    labels,
    name_of,
    replicas,
    shown,
    spec,
)

MIN_REPLICAS = "stateful-guard.io/min-replicas"
QUORUM = "stateful-guard.io/quorum"
NAME_LABEL = "app.kubernetes.io/name"


@dataclass(frozen=True, slots=True)
class Quorum:
    """A set's quorum: a fixed minimum, or (minimum None) a majority of its members."""

    system: str  # what it is: "ZooKeeper", or "annotated" for our annotations
    source: str  # how we know, for messages: "image docker.io/bitnami/zookeeper:3.9"
    minimum: int | None = None

    @property
    def majority(self) -> bool:
        return self.minimum is None

    def required(self, members: int) -> int:
        """How many of `members` must run for the cluster to make progress."""
        return self.minimum if self.minimum is not None else members // 2 + 1


class BadAnnotation(ValueError):
    """A quorum annotation whose value cannot be read; the message names key and value."""


def whole(key: str, raw: object) -> int:
    text = str(raw).strip()
    # str.isdigit() accepts "²" and other Unicode digits that int() refuses.
    if not (text.isascii() and text.isdigit()):
        raise BadAnnotation(f"annotation {key}={shown(raw)} is not a whole number")
    return int(text)


def profile(stateful_set: Mapping[str, Any] | None) -> Quorum | None:
    """The set's quorum, or None when its members are independent. Raises BadAnnotation."""
    notes = annotations_of(stateful_set)
    if MIN_REPLICAS in notes:
        minimum = whole(MIN_REPLICAS, notes[MIN_REPLICAS])
        return Quorum("annotated", f"annotation {MIN_REPLICAS}", minimum)
    if QUORUM in notes:
        value = str(notes[QUORUM]).strip().lower()
        if value in ("majority", "true"):
            return Quorum("annotated", f"annotation {QUORUM}={value}")
        if value in ("none", "false"):
            return None
        return Quorum("annotated", f"annotation {QUORUM}", whole(QUORUM, notes[QUORUM]))
    return recognise(stateful_set)


def majority(stateful_set: Mapping[str, Any] | None) -> Quorum | None:
    """The set as a majority-quorum cluster (annotated `quorum: majority`, or recognised),
    whatever fixed minimum it also carries; None when it is not one."""
    value = str(annotations_of(stateful_set).get(QUORUM, "")).strip().lower()
    if value in ("majority", "true"):
        return Quorum("annotated", f"annotation {QUORUM}={value}")
    return None if value else recognise(stateful_set)


def guarded_minimum(quorum: Quorum | None, old: int, *, stop: bool) -> int:
    """The fewest members the quorum policy lets a set of `old` keep (0: no limit); `stop`:
    scaled to 0 replicas. A recognised system's majority is guarded from 3 members up, and
    never against a full stop."""
    if quorum is None:
        return 0
    if quorum.majority and quorum.system != "annotated" and (old < 3 or stop):
        return 0  # nothing to lose, or a full stop
    return quorum.required(old)


def budget_for(stateful_set: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PodDisruptionBudget the leader gives a quorum set (config `disruptionBudgets`),
    or None for a set with no quorum to keep or no member to spare. `maxUnavailable` is what
    the quorum can spare: the eviction API then holds a second concurrent eviction back
    atomically, which this policy's per-replica count cannot. A not-ready member may always
    be evicted (`AlwaysAllow`), as this policy lets it go."""
    try:
        quorum = profile(stateful_set)
    except BadAnnotation:
        return None
    members = replicas(stateful_set)
    spare = members - guarded_minimum(quorum, members, stop=False)
    selector = spec(stateful_set).get("selector")
    if not 0 < spare < members or not isinstance(selector, dict):  # nothing to keep or spare
        return None
    set_name = name_of(stateful_set)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": f"{set_name}-quorum"[:253],
            "labels": dict(MANAGED_BY),
            "annotations": {SET_ANNOTATION: set_name},
        },
        "spec": {
            "selector": copy.deepcopy(selector),
            "maxUnavailable": spare,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def _words(text: str) -> set[str]:
    """An image's repository name, or a label, as words: `bitnami/mariadb-galera:12` ->
    {mariadb, galera, mariadb-galera}."""
    name = text.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0].lower()
    return {name, *re.split(r"[-_.]", name)}


def _containers(stateful_set: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    template = spec(stateful_set).get("template")
    containers = spec(template if isinstance(template, dict) else None).get("containers")
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    env = container.get("env")
    return {
        str(e.get("name", "")).upper(): str(e.get("value") or "")
        for e in (env if isinstance(env, list) else [])
        if isinstance(e, dict)
    }


def _text(container: Mapping[str, Any]) -> str:
    """Command, args and env as one lower-case text, to look for a mode switch."""
    parts: list[str] = []
    for key in ("command", "args"):
        value = container.get(key)
        if isinstance(value, list):
            parts.extend(str(v) for v in value)
    parts.extend(f"{k}={v}" for k, v in _env(container).items())
    return "\n".join(parts).lower()


def _elasticsearch_master(set_: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    """Master-eligible: `node.roles` (or the Bitnami/legacy variables) names master; a node
    that sets no roles has every role, master included."""
    env = _env(container)
    for key in ("NODE.ROLES", "ELASTICSEARCH_NODE_ROLES", "NODE_ROLES"):
        if key in env:
            return "master" in env[key].lower()
    if "NODE.MASTER" in env:
        return env["NODE.MASTER"].lower() == "true"
    return True


def _kraft_controller(set_: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    env = _env(container)
    for key in ("KAFKA_CFG_PROCESS_ROLES", "KAFKA_PROCESS_ROLES", "PROCESS.ROLES"):
        if key in env:
            return "controller" in env[key].lower()
    return False


def _vault_raft(set_: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    """Integrated storage: the chart's raft node id variable, or a data claim per member
    (the Consul backend keeps no data in the pod)."""
    if any("RAFT" in name for name in _env(container)) or "raft" in _text(container):
        return True
    return any(t.get("metadata", {}).get("name") == "data" for t in claim_templates(set_))


def _nats_jetstream(set_: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    return "jetstream" in _text(container) or bool(claim_templates(set_))


def _always(set_: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    return True


Applies = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
# (system, words of its image or name label, whether this set is its quorum part)
SYSTEMS: tuple[tuple[str, frozenset[str], Applies], ...] = (
    ("ZooKeeper", frozenset({"zookeeper"}), _always),
    ("etcd", frozenset({"etcd"}), _always),
    ("Consul", frozenset({"consul"}), _always),  # a StatefulSet of Consul is its servers
    ("Vault", frozenset({"vault"}), _vault_raft),
    ("Elasticsearch", frozenset({"elasticsearch"}), _elasticsearch_master),
    ("Kafka", frozenset({"kafka"}), _kraft_controller),
    ("MariaDB Galera", frozenset({"mariadb-galera", "galera"}), _always),
    ("CockroachDB", frozenset({"cockroach", "cockroachdb"}), _always),
    ("NATS JetStream", frozenset({"nats"}), _nats_jetstream),
    ("RabbitMQ", frozenset({"rabbitmq"}), _always),
)


def recognise(stateful_set: Mapping[str, Any] | None) -> Quorum | None:
    """The majority-quorum system a set runs, from its containers' images (else its name
    label), or None."""
    if stateful_set is None:
        return None
    template = spec(stateful_set).get("template")
    name_label = str(labels(template if isinstance(template, dict) else None).get(NAME_LABEL, ""))
    for container in _containers(stateful_set):
        image = str(container.get("image", ""))
        if {"exporter", "metrics"} & _words(image):
            continue  # a sidecar exporting the metrics of the system it is named after
        found = _match(stateful_set, container, _words(image), f"image {image}")
        if found:
            return found
    if name_label:
        for container in _containers(stateful_set)[:1]:
            found = _match(stateful_set, container, _words(name_label), f"label {NAME_LABEL}")
            if found:
                return found
    return None


def _match(
    stateful_set: Mapping[str, Any], container: Mapping[str, Any], words: set[str], source: str
) -> Quorum | None:
    for system, names, applies in SYSTEMS:
        if words & names:
            return Quorum(system, source) if applies(stateful_set, container) else None
    return None
