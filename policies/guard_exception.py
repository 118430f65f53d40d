"""guard-exception: a GuardException is short-lived by construction.

Rule: a GuardException (`policies.exceptions`) is refused at CREATE when its `expiresAt` is
not in the future, or lies more than the configured longest duration ahead
(`exceptions.maxDuration`, 7 days by default); at UPDATE when its `expiresAt` moves past
its creation plus that duration (an exception is renewed by writing a new one, which is
reviewed again, not by pushing an old one's end out).

Why: an exception switches a data guard off for the objects it names. One that never ends
is the annotation it replaces. The CRD's own validation (schema and CEL rules) checks the
shape, but CEL has no clock: this is the check that needs one. The engine also never honours
an exception past creation plus the longest duration, whatever `expiresAt` says, so a write
that reached the API server while the webhook was down still ends on time.

A GuardException cannot excuse this policy.
"""

from __future__ import annotations

from policies import exceptions
from policies.base import Match, Policy, Result, Review
from policies.objects import metadata, ref, spec


def validate(review: Review) -> Result:
    request = review.request
    owner = ref("GuardException", request.namespace, request.object_name)
    expires = exceptions.parse_time(spec(request.object).get("expiresAt"))
    if expires is None:
        return Result.allow()  # the CRD's schema refuses it with a clearer message
    longest = review.config.longest_exception
    now = review.now
    created = exceptions.parse_time(metadata(request.old_object).get("creationTimestamp"))
    start = created if request.operation == "UPDATE" and created else now
    latest = start + longest
    allowed = exceptions.shown_duration(longest)
    if request.operation == "CREATE" and expires <= now:
        return Result.deny(
            f"{owner}: expiresAt {exceptions.stamp(expires)} is not in the future. Set "
            f"expiresAt at most {allowed} ahead (`stateful-guard exception create --for 1h`).",
            short=f"{owner}: expiresAt is in the past; set one at most {allowed} ahead",
        )
    if expires > latest:
        since = "its creation" if start is created else "now"
        return Result.deny(
            f"{owner}: expiresAt {exceptions.stamp(expires)} is more than {allowed} after "
            f"{since}, the longest an exception may last here (exceptions.maxDuration). Set "
            f"expiresAt no later than {exceptions.stamp(latest)}; to go on past that, write "
            "a new exception, which is reviewed again.",
            short=f"{owner}: lasts more than {allowed}; set an earlier expiresAt",
        )
    return Result.allow()


POLICY = Policy(
    id="guard-exception",
    rationale="An exception that never ends is a guard switched off for good.",
    matches=(Match(exceptions.GROUP, exceptions.PLURAL, frozenset({"CREATE", "UPDATE"})),),
    validate=validate,
    exceptable=False,
)
