"""The rules as a kopf admission webhook: what a Python team would write. (b) and (c); not
(a), which kopf cannot express (below).

Run by `python -m bench peers` as `kopf run --standalone --all-namespaces` with PEERS_PORT,
PEERS_CERT, PEERS_KEY and PEERS_CA in the environment. kopf serves the webhook itself and
writes its own Validating/MutatingWebhookConfigurations (`kopf.peers.stateful-guard.io`)
pointing at https://127.0.0.1:PEERS_PORT; StorageClasses come from a kopf index (a watch),
so (c) makes no API call per request, as ours.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

NAMESPACE_CLASS = {"peers-bench": "fast"}  # (b): the namespace's class


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.admission.server = kopf.WebhookServer(
        addr="127.0.0.1",
        port=int(os.environ["PEERS_PORT"]),
        certfile=os.environ["PEERS_CERT"],
        pkeyfile=os.environ["PEERS_KEY"],
        cafile=os.environ["PEERS_CA"],
    )
    settings.admission.managed = "kopf.peers.stateful-guard.io"
    settings.posting.enabled = False  # no Events for the operator's own doings


@kopf.index("storage.k8s.io", "v1", "storageclasses")
def classes(name: str, **_: Any) -> dict[str, bool]:
    return {name: True}


# (a) is not written here: kopf hands its admission handlers the old and new objects, the
# user and the operation, but not the request's DeleteOptions, so a force delete (grace period
# 0) cannot be told from a graceful one (kopf 1.45; kopf.WebhookCause).


@kopf.on.mutate("apps", "v1", "statefulsets", operation="CREATE")
def claim_class(namespace: str, spec: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    """(b) a claim template that names no class gets the namespace's class."""
    wanted = NAMESPACE_CLASS.get(namespace)
    templates = spec.get("volumeClaimTemplates") or []
    if wanted and any("storageClassName" not in (t.get("spec") or {}) for t in templates):
        patch.spec["volumeClaimTemplates"] = [
            {**t, "spec": {"storageClassName": wanted, **(t.get("spec") or {})}} for t in templates
        ]


@kopf.on.validate("apps", "v1", "statefulsets", operation="CREATE")
def missing_class(spec: dict[str, Any], classes: kopf.Index[str, bool], **_: Any) -> None:
    """(c) refuse a StatefulSet whose claim template names a StorageClass that does not exist."""
    for template in spec.get("volumeClaimTemplates") or []:
        name = (template.get("spec") or {}).get("storageClassName")
        if name and name not in classes:
            raise kopf.AdmissionError(f"StorageClass {name} does not exist", code=403)
