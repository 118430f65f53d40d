"""stateful-practices: the habits that keep stateful sets healthy (warn by default).

Rule, on StatefulSet CREATE and UPDATE:
- with `podManagementPolicy: OrderedReady` (the default) every app container should have a
  readiness probe: ordered start-up waits on readiness, and without a probe "ready" means
  "started", so member 1 joins before member 0 can serve it;
- `terminationGracePeriodSeconds: 0` kills the database without a clean shutdown;
- env values that look like secrets (name has password, passwd, secret, token or key, with
  a literal `value`) belong in a Secret (`valueFrom.secretKeyRef`): the set's spec is
  readable by anyone who can read the set, and it is kept in every revision;
- `podManagementPolicy: Parallel` on a set annotated `stateful-guard.io/ordered-start: "true"`;
- a quorum set (annotated `stateful-guard.io/quorum: "true"`, or with
  `stateful-guard.io/min-replicas`) with an even replica count: 4 members tolerate one
  failure, as 3 do, at more cost.

The default mode is `warn`: each finding is a one-line warning that kubectl prints. In
`enforce` mode they refuse the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.base import Match, Mode, Policy, Result, Review
from policies.objects import annotations_of, ref, replicas, spec

ORDERED_START = "stateful-guard.io/ordered-start"
QUORUM = "stateful-guard.io/quorum"
MIN_REPLICAS = "stateful-guard.io/min-replicas"


def looks_secret(name: str) -> bool:
    """A name with password, passwd, secret, token, apikey, api_key or key as a word
    (`key`, `KEY_ID`, `TLS_KEY`): substring tests, a tenth of an equivalent regex's cost
    (a set has dozens of env entries, and this ran for each)."""
    n = name.lower()
    return (
        "pass" in n
        or "secret" in n
        or "token" in n
        or "apikey" in n
        or "api_key" in n
        or n == "key"
        or n.startswith("key_")
        or n.endswith("_key")
        or "_key_" in n
    )


def secret_names(names: list[str]) -> list[str]:
    """The names that look like secrets. Every word `looks_secret` matches contains pass,
    secret, token or key, so one scan of all the names at once usually rules them all out."""
    joined = "\n".join(names).lower()
    if not ("pass" in joined or "secret" in joined or "token" in joined or "key" in joined):
        return []
    return [name for name in names if looks_secret(name)]


def _containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    containers = pod.get("containers")
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []


def validate(review: Review) -> Result:
    obj = review.object
    set_spec = spec(obj)
    template = set_spec.get("template")
    pod = spec(template if isinstance(template, dict) else None)
    owner = ref("StatefulSet", review.namespace, review.request.object_name)
    policy = set_spec.get("podManagementPolicy") or "OrderedReady"
    notes = annotations_of(obj)
    result = Result.allow()

    def finding(message: str, short: str) -> None:
        nonlocal result
        result += Result.deny(message, short=short)

    if policy == "OrderedReady":
        for container in _containers(pod):
            if not container.get("readinessProbe"):
                name = container.get("name", "?")
                finding(
                    f"{owner}: container {name} has no readinessProbe, and OrderedReady "
                    "start-up waits on readiness; add a probe that passes only when the "
                    "member can serve its peers.",
                    f"{owner}: container {name} has no readinessProbe (OrderedReady)",
                )
    if pod.get("terminationGracePeriodSeconds") == 0:
        finding(
            f"{owner}: terminationGracePeriodSeconds: 0 kills members without a clean "
            "shutdown; give them time to flush (30 s or more).",
            f"{owner}: terminationGracePeriodSeconds 0 skips clean shutdown",
        )
    for container in _containers(pod):
        envs = container.get("env")
        literal = [
            str(e.get("name", ""))
            for e in (envs if isinstance(envs, list) else [])
            if isinstance(e, dict) and e.get("value")
        ]
        for name in secret_names(literal):
            finding(
                f"{owner}: container {container.get('name', '?')} has env "
                f"{name} as a literal value; move it to a Secret and use "
                "valueFrom.secretKeyRef.",
                f"{owner}: env {name}: literal secret, use secretKeyRef",
            )
    if policy == "Parallel" and str(notes.get(ORDERED_START, "")).lower() == "true":
        finding(
            f"{owner}: annotated {ORDERED_START}=true but podManagementPolicy is Parallel; "
            "use OrderedReady so members start one after another.",
            f"{owner}: ordered-start annotation but podManagementPolicy Parallel",
        )
    quorum = str(notes.get(QUORUM, "")).lower() == "true" or MIN_REPLICAS in notes
    count = replicas(obj)
    if quorum and count > 0 and count % 2 == 0:
        finding(
            f"{owner}: a quorum cluster of {count} members tolerates no more failures "
            f"than {count - 1}; use an odd count ({count - 1} or {count + 1}).",
            f"{owner}: quorum set with an even {count} replicas; use an odd count",
        )
    return result


POLICY = Policy(
    id="stateful-practices",
    rationale="Small habits (probes, grace, Secrets, odd quorums) keep stateful sets healthy.",
    matches=(
        Match(group="apps", resource="statefulsets", operations=frozenset({"CREATE", "UPDATE"})),
    ),
    validate=validate,
    default_mode=Mode.WARN,
)
