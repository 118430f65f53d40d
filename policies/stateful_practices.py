"""stateful-practices: the habits that keep stateful sets healthy (warn by default).

Rule, on StatefulSet CREATE and UPDATE:
- with `podManagementPolicy: OrderedReady` (the default) the pod should have a readiness
  probe (on any of its containers: sidecars need none of their own): ordered start-up waits
  on readiness, and without a probe "ready" means "started", so member 1 joins before
  member 0 can serve it;
- `terminationGracePeriodSeconds: 0` kills the database without a clean shutdown;
- literal env values that are secrets (the name ends in password, passwd, secret, token or
  key, and the value is not empty, a switch, a number, a path or a reference: `*_FILE` and
  `*_PATH` name where a secret is, not the secret) belong in a Secret
  (`valueFrom.secretKeyRef`): the set's spec is readable by anyone who can read the set,
  and it is kept in every revision;
- `podManagementPolicy: Parallel` on a set annotated `stateful-guard.io/ordered-start: "true"`;
- a majority-quorum set (recognised by `policies/quorum_profile.py` from its images and
  labels, or annotated `stateful-guard.io/quorum: majority`) with an even member count:
  4 members tolerate one failure, as 3 do, at more cost, and 2 tolerate none.

The default mode is `warn`: each finding is a one-line warning that kubectl prints. In
`enforce` mode they refuse the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.base import Finding, Match, Policy, Result, Review
from policies.modes import Mode
from policies.objects import annotations_of, ref, replicas, spec
from policies.quorum_profile import majority

ORDERED_START = "stateful-guard.io/ordered-start"


# A secret word ends the name: as a suffix of its last word (PGPASSWORD, authToken), or, for
# the short ones, as the whole last word (DB_PASS, TLS_KEY; not BYPASS, MONKEY). Names that
# end otherwise are references or settings: *_FILE, *_PATH, *PASSFILE*, KEY_ID, NUM_TOKENS=256.
_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token", "apikey", "api_key")
_SUFFIXES_PLURAL = tuple(f"{w}s" for w in _SUFFIXES)
_WORDS = ("pass", "key", "keys")
# Named like secrets, documented as identifiers: etcd's --initial-cluster-token tells one
# cluster's bootstrap from another's and is shown in plain text in etcd's own examples.
_IDENTIFIERS = ("initial_cluster_token",)
_NOT_SECRET_VALUES = frozenset(
    {"yes", "no", "true", "false", "on", "off", "y", "n", "enabled", "disabled", "none", "null"}
)


def looks_secret(name: str) -> bool:
    """Whether an env name ends in a secret word (substring tests: a set has dozens of env
    entries, and a regex per entry was most of the policy's cost)."""
    n = name.lower().replace("-", "_").replace(".", "_")
    if n.endswith(_IDENTIFIERS):
        return False
    if n.endswith(_SUFFIXES) or n.endswith(_SUFFIXES_PLURAL):
        return True
    last = n.rsplit("_", 1)[-1]
    return last in _WORDS


def secret_value(value: str) -> bool:
    """Whether a literal could be a secret: not empty, a switch, a number, a path or a
    reference to another variable, nor a list of settings (`jwt,priv-key=/path,ttl=10m`)."""
    v = value.strip()
    if not v or v.lower() in _NOT_SECRET_VALUES:
        return False
    try:
        float(v)
    except ValueError:
        pass
    else:
        return False
    if v.startswith(("/", "./", "../", "~/", "file:")) or "$(" in v or "${" in v:
        return False
    return not ("," in v and "=" in v)


def secret_names(env: list[tuple[str, str]]) -> list[str]:
    """The names of (name, literal value) pairs that hold a secret. Every secret word
    contains pass, secret, token or key, so one scan of all the names at once usually rules
    them all out."""
    joined = "\n".join(name for name, _ in env).lower()
    if not ("pass" in joined or "secret" in joined or "token" in joined or "key" in joined):
        return []
    return [name for name, value in env if looks_secret(name) and secret_value(value)]


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
    findings: list[Finding] = []  # a list, not Result + Result: a set may have many

    def finding(message: str, short: str) -> None:
        findings.append(Finding(message, short))

    containers = _containers(pod)
    probed = any(c.get("readinessProbe") for c in containers)
    if policy == "OrderedReady" and containers and not probed:
        names = ", ".join(str(c.get("name", "?")) for c in containers)
        finding(
            f"{owner}: no container ({names}) has a readinessProbe, and OrderedReady "
            "start-up waits on readiness; add a probe that passes only when the member can "
            "serve its peers.",
            f"{owner}: add a readinessProbe (OrderedReady waits on it)",
        )
    if pod.get("terminationGracePeriodSeconds") == 0:
        finding(
            f"{owner}: terminationGracePeriodSeconds: 0 kills members without a clean "
            "shutdown; give them time to flush (30 s or more).",
            f"{owner}: terminationGracePeriodSeconds 0 skips clean shutdown",
        )
    for container in containers:
        envs = container.get("env")
        literal = [
            (str(e.get("name", "")), str(e["value"]))
            for e in (envs if isinstance(envs, list) else [])
            if isinstance(e, dict) and e.get("value")
        ]
        for name in secret_names(literal):
            where = container.get("name", "?")
            # the container is named where the pod has several (the same name may repeat)
            short = f"env {name} ({where})" if len(containers) > 1 else f"env {name}"
            finding(
                f"{owner}: container {where} has env {name} as a literal value; move it to "
                "a Secret and use valueFrom.secretKeyRef.",
                f"{owner}: {short}: literal secret, use secretKeyRef",
            )
    if policy == "Parallel" and str(notes.get(ORDERED_START, "")).lower() == "true":
        finding(
            f"{owner}: annotated {ORDERED_START}=true but podManagementPolicy is Parallel; "
            "use OrderedReady so members start one after another.",
            f"{owner}: ordered-start annotation but podManagementPolicy Parallel",
        )
    quorum = majority(obj)
    count = replicas(obj)
    if quorum is not None and count > 0 and count % 2 == 0:
        system = "a quorum" if quorum.system == "annotated" else f"{quorum.system} (majority)"
        finding(
            f"{owner}: {system} cluster of {count} members ({quorum.source}) tolerates no "
            f"more failures than {count - 1}"
            + (" (two tolerate none, as one)" if count == 2 else "")
            + f"; use an odd count ({count - 1} or {count + 1}).",
            f"{owner}: {count} members of a majority quorum; use an odd count",
        )
    return Result(denials=tuple(findings))


POLICY = Policy(
    id="stateful-practices",
    rationale="Small habits (probes, grace, Secrets, odd quorums) keep stateful sets healthy.",
    matches=(
        Match(group="apps", resource="statefulsets", operations=frozenset({"CREATE", "UPDATE"})),
    ),
    validate=validate,
    default_mode=Mode.WARN,
)
