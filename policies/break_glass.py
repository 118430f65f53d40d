"""Break-glass annotations: the per-object way past a data guard, honoured only where the
configuration says so (`breakGlass.annotations`, off by default).

`stateful-guard.io/allow-force-delete` on a pod and `stateful-guard.io/allow-data-deletion` on
a claim or a set used to open force-delete and pvc-protection for that object. An annotation
never expires, names no one, and is set by whoever may edit the object; a GuardException
(`policies.exceptions`) is the reviewable, expiring way. Denials say which way is open here.

A template is never the place for one: in a pod template it would arm every pod the set
makes, in a claim template every claim. Where annotations are honoured that is refused;
where they are not, it is inert and warned of.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.base import Result, Review
from policies.objects import annotations_of, claim_templates, ref, spec

FORCE_DELETE = "stateful-guard.io/allow-force-delete"
DATA_DELETION = "stateful-guard.io/allow-data-deletion"


def annotated(review: Review, obj: Mapping[str, Any] | None, annotation: str) -> bool:
    """Whether `obj` carries `annotation` with a reason, and annotations count here."""
    if not review.config.break_glass_annotations:
        return False
    return bool(str(annotations_of(obj).get(annotation, "")).strip())


def way_past(review: Review, policy: str, flag: str, name: str, *, annotate: str) -> str:
    """How a denial says to act past `policy` for one object anyway: an exception (the
    command that writes one), or also the annotation where annotations count. `annotate`
    names the annotation's object and key: `the claim stateful-guard.io/allow-...`."""
    command = (
        f"`stateful-guard exception create --policy {policy} --{flag} "
        f"{review.namespace}/{name} --for 1h --reason <why>`"
    )
    if review.config.break_glass_annotations:
        return f"annotate {annotate}=<reason>, or have an exception writer run {command}"
    return f"have an exception writer run {command}"


def in_templates(review: Review, annotation: str) -> Result:
    """StatefulSet CREATE/UPDATE: `annotation` in its pod template or claim templates."""
    request = review.request
    template = spec(request.object).get("template")
    places = []
    if annotation in annotations_of(template if isinstance(template, dict) else None):
        places.append("pod template")
    if any(annotation in annotations_of(t) for t in claim_templates(request.object)):
        places.append("claim templates")
    if not places:
        return Result.allow()
    owner = ref("StatefulSet", request.namespace, request.object_name)
    where = " and ".join(places)
    # The template whose copies read the annotation: pods (force delete), claims (delete).
    arms, made, readers = (
        ("pod template", "pod", "pods")
        if annotation == FORCE_DELETE
        else ("claim templates", "claim", "claims and sets")
    )
    # Claim templates are immutable: one stored with the annotation cannot lose it, so an
    # UPDATE is not refused for it (every later change of the set would be), only warned of.
    stored = arms == "claim templates" and any(
        annotation in annotations_of(t) for t in claim_templates(request.old_object)
    )
    if arms in places and review.config.break_glass_annotations and not stored:
        return Result.deny(
            f"{owner}: its {arms} {'carries' if made == 'pod' else 'carry'} {annotation}, "
            f"which would open the guard for every {made} the set makes, now and later. Remove "
            f"it from the template; annotate the one {made} you mean when you do, or use a "
            "GuardException.",
            short=f"{owner}: remove {annotation} from the {arms}",
        )
    if stored and review.config.break_glass_annotations:
        return Result.warn(
            f"{owner}: its claim templates carry {annotation}, so every claim the set makes "
            "can be deleted while in use; claim templates cannot change: recreate the set "
            "without it (--cascade=orphan keeps its pods and claims).",
            short=f"{owner}: {annotation} in its claim templates arms every claim",
        )
    why = "break-glass annotations are off here" if arms in places else f"it is read on {readers}"
    return Result.warn(
        f"{owner}: {annotation} in its {where} does nothing ({why}). Remove it; a "
        "GuardException lets one object past a guard.",
        short=f"{owner}: {annotation} in its {where} does nothing; remove it",
    )
