"""The admission request a policy reads, as the API server sends it (admission.k8s.io/v1).

Only the envelope is modelled; `object`, `oldObject` and `options` stay plain dicts so a
request is never re-validated field by field (policies read the few fields they need).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class WireModel(BaseModel):
    """A part of the wire format: read by its camelCase names only, as the API server sends
    them (accepting snake_case too made every field two lookups), unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, extra="ignore", frozen=True)


class GroupVersionKind(WireModel):
    group: str = ""
    version: str
    kind: str


class GroupVersionResource(WireModel):
    group: str = ""
    version: str
    resource: str


class UserInfo(WireModel):
    username: str = ""
    uid: str = ""
    groups: list[str] = Field(default_factory=list)
    extra: dict[str, list[str]] = Field(default_factory=dict)


class AdmissionRequest(WireModel):
    uid: str = Field(min_length=1)
    kind: GroupVersionKind
    resource: GroupVersionResource
    sub_resource: str = ""
    name: str = ""
    namespace: str = ""
    operation: Operation
    user_info: UserInfo = Field(default_factory=UserInfo)
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    dry_run: bool = False
    options: dict[str, Any] | None = None

    @property
    def object_name(self) -> str:
        """The object's name; deletecollection sends `name: ""`, so read it from the object."""
        if self.name:
            return self.name
        for obj in (self.object, self.old_object):
            meta = (obj or {}).get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if isinstance(name, str) and name:
                return name
        return ""
