"""deploy/ as users render it: kustomize overlays and the Helm chart give the same objects,
and every install keeps the safety properties the README promises."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import NAMESPACE, WEBHOOK_KINDS, render
from tests.e2e.controlplane import tool
from tests.support import ROOT

SCOPES = ["namespaced", "cluster-wide"]


def helm(scope: str, *extra: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            str(tool("helm")),
            "template",
            "stateful-guard",
            str(ROOT / "deploy" / "chart"),
            "--namespace",
            NAMESPACE,
            "--set",
            f"scope={scope}",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def keyed(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.mark.parametrize("scope", SCOPES)
def test_helm_chart_renders_the_kustomize_objects(scope: str) -> None:
    """The same objects, but the Namespace: Helm stores its release in the namespace, so
    `helm install --create-namespace` makes it, and a chart that templated it too could not
    be installed."""
    kustomized, charted = keyed(render(scope)), keyed(helm(scope))
    assert kustomized.pop(("Namespace", NAMESPACE))
    assert sorted(charted) == sorted(kustomized)
    for key, obj in kustomized.items():
        assert json.dumps(charted[key], sort_keys=True) == json.dumps(obj, sort_keys=True), key


def test_helm_tls_values_make_the_secret_and_every_ca_bundle(tmp_path: Path) -> None:
    """`--set-file tls.crt/tls.key/tls.ca`: the Secret the Deployment mounts, and the CA in
    every webhook's caBundle; one of them alone is refused, saying which go together."""
    pem = {}
    for name in ("crt", "key", "ca"):
        pem[name] = f"-----BEGIN {name}-----\n{name}\n-----END {name}-----\n"
        (tmp_path / name).write_text(pem[name])
    files = [f"--set-file=tls.{name}={tmp_path / name}" for name in pem]
    objects = keyed(helm("namespaced", *files))
    secret = objects[("Secret", "stateful-guard-tls")]
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["namespace"] == NAMESPACE
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"tls.crt": pem["crt"], "tls.key": pem["key"], "ca.crt": pem["ca"]}
    hooks = webhooks(list(objects.values()))
    assert len(hooks) == 5
    assert {base64.b64decode(h["clientConfig"]["caBundle"]).decode() for h in hooks} == {pem["ca"]}
    with pytest.raises(subprocess.CalledProcessError) as partial:
        helm("namespaced", files[0])
    assert "tls.crt, tls.key and tls.ca go together" in partial.value.stderr


def webhooks(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [hook for o in objects if o["kind"] in WEBHOOK_KINDS for hook in o["webhooks"]]


@pytest.mark.parametrize("scope", SCOPES)
def test_every_webhook_excludes_kube_system_and_ourselves(scope: str) -> None:
    for hook in webhooks(render(scope)):
        expressions = hook["namespaceSelector"]["matchExpressions"]
        assert {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["kube-system", NAMESPACE],
        } in expressions, hook["name"]
        # The data webhooks record refusals as Events, never for a dry run.
        data = hook["name"].split(".")[0] in ("pods", "data", "evictions")
        assert hook["sideEffects"] == ("NoneOnDryRun" if data else "None"), hook["name"]
        assert hook["admissionReviewVersions"] == ["v1"]
        assert 1 <= hook["timeoutSeconds"] <= 10


def test_scopes_select_namespaces_as_documented() -> None:
    # Namespaced: any value of the label opts in (a typo guards in full, never not at all).
    opt_in = {"key": "stateful-guard.io/mode", "operator": "Exists"}
    opt_out = {"key": "stateful-guard.io/mode", "operator": "NotIn", "values": ["off"]}
    for scope, expected in (("namespaced", opt_in), ("cluster-wide", opt_out)):
        for hook in webhooks(render(scope)):
            assert expected in hook["namespaceSelector"]["matchExpressions"], hook["name"]


@pytest.mark.parametrize("scope", SCOPES)
def test_rules_route_every_request_a_policy_judges(scope: str) -> None:
    """Derived from the policies' own matches: a policy that judges a kind of request the
    webhooks never send would be a guard that never runs."""
    from policies.registry import POLICIES

    seen = set()
    for hook in webhooks(render(scope)):
        for rule in hook["rules"]:
            for resource in rule["resources"]:
                for op in rule["operations"]:
                    seen.add((hook["clientConfig"]["service"]["path"], resource, op))
    needed = {
        (path, f"{m.resource}/{m.subresource}" if m.subresource else m.resource, op)
        for policy in POLICIES
        for path, func in (("/mutate", policy.mutate), ("/validate", policy.validate))
        if func is not None
        for m in policy.matches
        for op in m.operations
    }
    assert needed - seen == set()


def test_failure_policies_match_what_each_webhook_guards() -> None:
    """Every webhook ships `Ignore` (an install that never serves locks nothing out); the
    data guards are named to turn `Fail` once the API server reaches the webhook."""
    objects = render("namespaced")
    policy = {hook["name"]: hook["failurePolicy"] for hook in webhooks(objects)}
    assert set(policy.values()) == {"Ignore"}
    assert sorted(policy) == sorted(
        [
            "mutate.stateful-guard.io",
            "pods.stateful-guard.io",
            "data.stateful-guard.io",
            "workloads.stateful-guard.io",
            "evictions.stateful-guard.io",
        ]
    )
    validating = keyed(objects)[("ValidatingWebhookConfiguration", "stateful-guard")]
    named = validating["metadata"]["annotations"]["stateful-guard.io/fail-closed-once-reached"]
    assert sorted(named.split(",")) == [
        "data.stateful-guard.io",
        "evictions.stateful-guard.io",
        "pods.stateful-guard.io",
    ]
    text = (ROOT / "deploy" / "base" / "webhooks.yaml").read_text()
    assert text.count("# Fail once reached") == 3 and text.count("# Ignore:") == 2, "reasons"


def test_the_shipped_config_loads() -> None:
    from policies.config import Config

    config = next(o for o in render("namespaced") if o["kind"] == "ConfigMap")
    Config.from_yaml(config["data"]["config.yaml"])


def test_the_drain_safe_profile_turns_budgets_and_reports_on(tmp_path: Path) -> None:
    """The component adds a config file read over the shipped one, and the audit interval."""
    from policies.config import Config
    from policies.registry import BY_ID

    objects = keyed(with_components(tmp_path, "drain-safe"))
    data = objects[("ConfigMap", "stateful-guard-config")]["data"]
    pod = objects[("Deployment", "stateful-guard")]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    files = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--config=")]
    assert files == [
        "/etc/stateful-guard/config/config.yaml",
        "/etc/stateful-guard/config/drain-safe.yaml",
    ]
    assert "--audit-interval=300" in container["args"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "config"]
    assert "items" not in volume["configMap"], "every key of the ConfigMap is a file"
    config = Config.from_layers([(f, data[f.rsplit("/", 1)[1]]) for f in files])
    assert config.disruption_budgets_for("any") is True
    assert config == Config.from_yaml(data["config.yaml"]).model_copy(
        update={"disruption_budgets": True}
    ), "nothing else of the shipped config changes"
    assert config.policy_mode(BY_ID["quorum"]).value == "enforce"


def test_deployment_runs_restricted() -> None:
    deployment = keyed(render("namespaced"))[("Deployment", "stateful-guard")]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert deployment["spec"]["replicas"] >= 2
    assert keyed(render("namespaced"))[("PodDisruptionBudget", "stateful-guard")]


def with_components(tmp_path: Path, *components: str) -> list[dict[str, Any]]:
    """An overlay composed with components, as a user's own kustomization does it."""
    top = tmp_path / "install"
    top.mkdir()
    deploy = ROOT / "deploy"
    (top / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(deploy / "overlays" / "cluster-wide", top)],
                "components": [os.path.relpath(deploy / "components" / c, top) for c in components],
            }
        )
    )
    out = subprocess.run(
        [str(tool("kustomize")), "build", str(top)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_client_ca_component_requires_api_server_certificates(tmp_path: Path) -> None:
    objects = keyed(with_components(tmp_path, "client-ca"))
    pod = objects[("Deployment", "stateful-guard")]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "--client-ca=/etc/stateful-guard/client-ca/ca.crt" in container["args"]
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["client-ca"]
    assert mount == "/etc/stateful-guard/client-ca"
    volume = {v["name"]: v for v in pod["volumes"]}["client-ca"]
    assert volume["configMap"]["name"] == "stateful-guard-client-ca"
    # the probes need no certificate: they are on the plain-HTTP ops port
    assert container["readinessProbe"]["httpGet"]["port"] == "ops"


def test_network_policy_component_admits_no_pod_on_the_tls_port(tmp_path: Path) -> None:
    objects = keyed(with_components(tmp_path, "network-policy"))
    policy = objects[("NetworkPolicy", "stateful-guard")]
    assert policy["metadata"]["namespace"] == NAMESPACE
    deployment = objects[("Deployment", "stateful-guard")]
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == (deployment["spec"]["selector"]["matchLabels"])
    )
    [tls] = [rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == 8443]
    assert tls["from"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16"]}}]


def test_the_image_is_set_by_kustomize_images_and_by_helm_values(tmp_path: Path) -> None:
    top = tmp_path / "mine"
    top.mkdir()
    (top / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(ROOT / "deploy" / "overlays" / "namespaced", top)],
                "images": [
                    {
                        "name": "stateful-guard",
                        "newName": "registry.example.com/sg",
                        "newTag": "1.2",
                    }
                ],
            }
        )
    )
    out = subprocess.run(
        [str(tool("kustomize")), "build", str(top)], capture_output=True, text=True, check=True
    ).stdout
    kustomized = keyed([d for d in yaml.safe_load_all(out) if d])
    charted = keyed(
        helm(
            "namespaced",
            "--set",
            "image.repository=registry.example.com/sg",
            "--set",
            "image.tag=1.2",
        )
    )
    for objects in (kustomized, charted):
        [container] = objects[("Deployment", "stateful-guard")]["spec"]["template"]["spec"][
            "containers"
        ]
        assert container["image"] == "registry.example.com/sg:1.2"
