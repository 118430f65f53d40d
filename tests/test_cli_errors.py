"""What a newcomer meets when something is wrong: one line that says what and where, and the
exit code the README's table gives (`webhook.cli.EXIT_*`), never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT, stateful_guard
from webhook import cli

EXAMPLES = ROOT / "examples"


def run(
    *args: str, cwd: Path = ROOT, stdin: str | None = "", closed_stdin: bool = False
) -> subprocess.CompletedProcess[str]:
    closed = {"stdin": subprocess.DEVNULL, "preexec_fn": lambda: os.close(0)}  # `<&-`
    done = stateful_guard(
        *args, cwd=cwd, feed=None if closed_stdin else stdin, **(closed if closed_stdin else {})
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def unreachable_kubeconfig(tmp_path: Path) -> Path:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


def test_the_exit_codes_are_one_table() -> None:
    codes = {
        name: getattr(cli, name)
        for name in dir(cli)
        if name.startswith("EXIT_") and isinstance(getattr(cli, name), int)
    }
    assert sorted(codes.values()) == list(range(6))
    listed = run("--help").stdout
    for code in codes.values():
        assert f"\n  {code}  " in listed
    readme = (ROOT / "README.md").read_text()
    for code in codes.values():
        assert f"| {code} |" in readme, f"README's exit-code table lacks {code}"


def test_an_unreachable_cluster_is_exit_3_in_one_line(tmp_path: Path) -> None:
    done = run("audit", "--cluster", "--kubeconfig", str(unreachable_kubeconfig(tmp_path)))
    assert done.returncode == cli.EXIT_CLUSTER
    [line] = done.stderr.splitlines()
    assert line.startswith("stateful-guard: cannot reach https://127.0.0.1:")
    assert line.endswith("to list its objects: [Errno 111] Connection refused")


@pytest.mark.parametrize("command", [["serve"], ["audit", "--cluster"]])
def test_a_missing_kubeconfig_is_named(command: list[str]) -> None:
    done = run(*command, "--kubeconfig", "/no/such/kubeconfig")
    assert done.returncode == cli.EXIT_CLUSTER
    assert "stateful-guard: kubeconfig /no/such/kubeconfig: no such file" in done.stderr


def test_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run(
            "serve", "--listen", f"127.0.0.1:{port}", "--ops-listen", "127.0.0.1:0", cwd=tmp_path
        )
    assert done.returncode == cli.EXIT_LOCAL
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in done.stderr.lower()
    assert "cannot reach the cluster" not in done.stderr


def test_an_unwritable_directory_says_so(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where a directory should be
    done = run("serve", "--cert-dir", str(blocked / "certs"), cwd=tmp_path)
    assert done.returncode == cli.EXIT_LOCAL
    assert f"cannot write certificates in {blocked / 'certs'}" in done.stderr
    done = run("certs", "--out", str(blocked / "certs"))
    assert done.returncode == cli.EXIT_LOCAL and "cannot write into" in done.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--ip", "not-an-ip"], "argument --ip: expected an IPv4 or IPv6 address"),
        (["--days", "-5"], "argument --days: expected a whole number of days, 1 or more"),
        (["--days", "0"], "argument --days: expected a whole number of days, 1 or more"),
    ],
)
def test_certificate_arguments_are_checked(tmp_path: Path, args: list[str], said: str) -> None:
    done = run("certs", "--out", str(tmp_path), *args)
    assert done.returncode == cli.EXIT_USAGE and said in done.stderr


def test_closed_stdin_is_a_clear_error() -> None:
    done = run("audit", "-f", "-", closed_stdin=True)
    assert done.returncode == cli.EXIT_USAGE
    assert "-: standard input is closed" in done.stderr


@pytest.mark.parametrize(
    "stdin",
    [
        pytest.param("", id="empty"),
        pytest.param("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", id="only-pods"),
    ],
)
def test_nothing_to_judge_is_not_a_pass(stdin: str) -> None:
    done = run("audit", "-f", "-", stdin=stdin)
    assert done.returncode == cli.EXIT_NOTHING
    assert "nothing to judge in -" in done.stderr and "--allow-empty" in done.stderr
    assert run("audit", "-f", "-", "--allow-empty", stdin=stdin).returncode == cli.EXIT_OK


def test_an_empty_directory_is_nothing_to_judge(tmp_path: Path) -> None:
    assert run("audit", "-f", str(tmp_path)).returncode == cli.EXIT_NOTHING


@pytest.mark.parametrize("flag", [["--report"], ["--kubeconfig", "k"], ["--in-cluster"]])
def test_cluster_flags_need_cluster(flag: list[str]) -> None:
    done = run("audit", "-f", str(EXAMPLES), *flag)
    assert done.returncode == cli.EXIT_USAGE
    assert f"{flag[0]}: only with --cluster" in done.stderr


def test_a_directory_audit_reports_unreadable_files_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "a-template.yaml").write_text(
        "kind: Service\nmetadata:\n  name: {{ .Release.Name }}\n"
    )
    (tmp_path / "b.yaml").write_text((ROOT / "tests" / "gallery" / "redis.yaml").read_text())
    done = run("audit", "-f", str(tmp_path), "-o", "json")
    assert done.returncode == cli.EXIT_USAGE  # unreadable input, after judging the rest
    data = json.loads(done.stdout)
    [error] = [r for r in data["results"] if r["findings"][0]["result"] == "error"]
    assert error["object"]["source"] == str(tmp_path / "a-template.yaml")
    assert (
        "a Helm template: audit `helm template RELEASE CHART` output"
        in (error["findings"][0]["message"])
    )
    assert any(r["object"]["kind"] == "StatefulSet" for r in data["results"])


def test_version() -> None:
    assert run("--version").stdout.startswith("stateful-guard 0.")
    said = run("version").stdout
    assert "admission.k8s.io/v1" in said and "stateful-guard.io/v1alpha1" in said


def test_every_option_says_what_it_does() -> None:
    parser = cli.build_parser()
    commands = [parser]
    while commands:
        command = commands.pop()
        for action in command._actions:
            if action.choices and isinstance(action.choices, dict):  # subcommands
                commands.extend(action.choices.values())
            elif action.option_strings:
                assert action.help, f"{command.prog} {action.option_strings[0]} has no help"


def serve_until_serving(tmp_path: Path, listen: str) -> list[dict[str, object]]:
    """`serve --listen LISTEN`'s log lines up to the one that says it serves, then stopped."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "serve",
            "--listen",
            listen,
            "--ops-listen",
            "127.0.0.1:0",
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[dict[str, object]] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            str(line.get("msg", "")).startswith("serving") for line in said
        ):
            text = process.stderr.readline()
            if text.startswith("{"):
                said.append(json.loads(text))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return said


@pytest.mark.parametrize(
    ("listen", "logged"),
    [
        ("127.0.0.1:0", "https://127.0.0.1:"),
        ("[::1]:0", "https://[::1]:"),
    ],
)
def test_listen_addresses_are_logged_as_urls(tmp_path: Path, listen: str, logged: str) -> None:
    """Port 0 is a free port, logged as the one chosen; an IPv6 address in brackets."""
    served = serve_until_serving(tmp_path, listen)[-1]
    assert str(served["listen"]).startswith(logged)
    assert not str(served["listen"]).endswith(":0"), "the port chosen, not 0"
    assert str(served["ops"]).startswith("http://127.0.0.1:")


def test_a_refusing_api_server_is_exit_3_naming_what_was_refused(tmp_path: Path) -> None:
    """A 403 (RBAC) is not "cannot reach": the message says who refused what."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Forbidden(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"kind":"Status","code":403,"message":"statefulsets.apps is forbidden"}'
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forbidden)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{server.server_port}'}}}}]\n"
            "users: [{name: u, user: {token: x}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        )
        done = run("audit", "--cluster", "--kubeconfig", str(kubeconfig))
    finally:
        server.shutdown()
    assert done.returncode == cli.EXIT_CLUSTER
    assert f"http://127.0.0.1:{server.server_port} refused to list its objects" in done.stderr
    assert "HTTP 403" in done.stderr and "statefulsets.apps is forbidden" in done.stderr


def test_an_object_with_null_metadata_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    null = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: null\n"
    done = run("audit", "-f", "-", stdin=null)
    assert done.returncode == cli.EXIT_FAILED
    assert "metadata must be a mapping, got null" in done.stdout
    objects = tmp_path / "objects.yaml"
    objects.write_text(null)
    done = run("audit", "-f", str(EXAMPLES / "nginx-web.yaml"), "--objects", str(objects))
    assert done.returncode == cli.EXIT_OK


def test_every_address_is_said(tmp_path: Path) -> None:
    said = serve_until_serving(tmp_path, ":0")
    assert any(line["msg"] == "listening on every address of this machine" for line in said)


def test_a_broken_certificate_is_said_to_be_broken(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "tls.crt").write_text("not a certificate")
    (certs / "tls.key").write_text("not a key")
    done = run("serve", "--cert-dir", str(certs), cwd=tmp_path)
    assert done.returncode == cli.EXIT_USAGE
    assert f"{certs}: a certificate there cannot be read" in done.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "/no/such/ca.crt: No such file or directory"), ("x", "NO_CERTIFICATE_OR_CRL_FOUND")],
)
def test_a_bad_client_ca_is_named(tmp_path: Path, content: str | None, said: str) -> None:
    ca = Path("/no/such/ca.crt") if content is None else tmp_path / "ca.crt"
    if content is not None:
        ca.write_text(content)
    done = run("serve", "--client-ca", str(ca), "--listen", "127.0.0.1:0", cwd=tmp_path)
    assert done.returncode == cli.EXIT_USAGE
    assert "cannot load the TLS files" in done.stderr and said in done.stderr


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--reconcile-interval", "0", "expected seconds, more than 0"),
        ("--cert-reload-interval", "-1", "expected seconds, more than 0"),
        ("--shutdown-delay", "nan", "expected seconds, 0 or more"),
        ("--max-connections", "0", "expected a whole number, 1 or more"),
    ],
)
def test_serve_numbers_are_checked(flag: str, value: str, said: str) -> None:
    done = run("serve", flag, value)
    assert done.returncode == cli.EXIT_USAGE and said in done.stderr
