"""The AdmissionReview wire format (admission.k8s.io/v1): parse a call, build its answer.

Two error channels (as in controller-runtime): a call we cannot read is a `ReviewError`
that the server turns into an HTTP 4xx; a request we refuse is a well-formed response with
`allowed: false`.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from policies.request import AdmissionRequest, WireModel
from webhook.engine import Outcome

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"


class ReviewError(ValueError):
    """A call that is not a usable AdmissionReview; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AdmissionReview(WireModel):
    api_version: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


def parse_review(body: bytes) -> AdmissionReview:
    """Read an AdmissionReview call; raise ReviewError naming what is wrong."""
    if not body:
        raise ReviewError("empty body: expected an AdmissionReview (admission.k8s.io/v1)")
    try:
        # orjson then validation of the dict: half the time of pydantic's own JSON parser.
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "not valid UTF-8" in str(exc):  # orjson says "surrogates not allowed"
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise ReviewError(
                    f"body is not UTF-8 (byte {bad.start}); JSON must be UTF-8"
                ) from None
        raise ReviewError(f"body is not valid JSON: {exc}") from None
    try:
        return AdmissionReview.model_validate(data)
    except ValidationError as exc:
        raise ReviewError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "json_invalid":
            return f"body is not valid JSON: {err['msg']}"
        if err["type"] == "model_type" and not where:
            return "body must be a JSON object (an AdmissionReview)"
        if where == "apiVersion" and err["type"] == "literal_error":
            problems.append(f"apiVersion must be {API_VERSION}, got {err.get('input')!r}")
        elif where == "kind" and err["type"] == "literal_error":
            problems.append(f"kind must be {KIND}, got {err.get('input')!r}")
        else:
            problems.append(f"{where}: {err['msg']}")
    return "invalid AdmissionReview: " + "; ".join(problems)


def encode_answer(uid: str, outcome: Outcome) -> bytes:
    """The AdmissionReview that answers a call, as JSON bytes (built directly: a model and
    its dump cost more than the rest of a small answer)."""
    response: dict[str, Any] = {"uid": uid, "allowed": outcome.allowed}
    if not outcome.allowed:
        reason = "TooManyRequests" if outcome.code == 429 else "Forbidden"
        response["status"] = {"code": outcome.code, "message": outcome.message, "reason": reason}
    elif outcome.patch:
        response["patch"] = base64.b64encode(orjson.dumps(outcome.patch)).decode()
        response["patchType"] = "JSONPatch"
    if outcome.warnings:
        response["warnings"] = outcome.warnings
    if outcome.audit_annotations:
        response["auditAnnotations"] = outcome.audit_annotations
    return orjson.dumps({"apiVersion": API_VERSION, "kind": KIND, "response": response})
