"""The `stateful-guard` command: serve the webhook, audit, make certificates.

An offline audit (`audit -f`, often run in CI on a few files) imports neither aiohttp nor the
Kubernetes client, about half a second of start-up: the commands that use them import them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from policies import exceptions
from policies.config import Config, ConfigError
from policies.registry import POLICIES
from webhook import collector, logs, package_version
from webhook.audits.audit import cluster_subjects, judge, manifest_subjects
from webhook.audits.outputs import FORMATS, render
from webhook.cluster.manifests import ManifestError, load
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

if TYPE_CHECKING:
    from certs.files import CertFiles
    from policies.view import ClusterView
    from webhook.cluster.live import LiveView
    from webhook.serving.metrics import Metrics
    from webhook.serving.server import Job

log = logging.getLogger("stateful_guard.cli")
T = TypeVar("T")

# Exit codes, one table (README "Exit codes"; tests/test_cli.py holds each to it).
EXIT_OK = 0  # done; an audit: no enforce-mode policy failed
EXIT_FAILED = 1  # an audit: an enforce-mode policy failed
EXIT_USAGE = 2  # bad options, an unreadable config or manifest, a bad value
EXIT_CLUSTER = 3  # the cluster: kubeconfig missing or broken, unreachable, or refused us
EXIT_NOTHING = 4  # an audit judged nothing (`--allow-empty` makes it 0)
EXIT_LOCAL = 5  # this machine: an address in use, a directory we cannot write

DEFAULT_CERT_DIR = Path(".stateful-guard/certs")
DEFAULT_SERVICE = "stateful-guard"
DEFAULT_NAMESPACE = os.environ.get("POD_NAMESPACE", "stateful-guard")


class CliError(Exception):
    """A failure the user can act on: said in one line, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (every address); port 0 picks a free one, logged at
    start."""
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":8443"


def count(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number, 1 or more, got {value!r}")
    return int(value)


def seconds(*, above: float | None = None) -> Callable[[str], float]:
    """Seconds as a number, at least 0 (or more than `above`): a negative interval or a zero
    one for a loop is a mistake to say, not a busy loop to run."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not math.isfinite(number) or number < 0 or (above is not None and number <= above):
            least = "0 or more" if above is None else f"more than {above:g}"
            raise argparse.ArgumentTypeError(f"expected seconds, {least}, got {value!r}")
        return number

    return parse


def positive_days(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of days, 1 or more, got {value!r}"
        )
    return int(value)


def ip_address(value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an IPv4 or IPv6 address, got {value!r}"
        ) from None


def load_config(paths: Sequence[Path] | None) -> Config:
    """The config from `--config` files, each later one over the ones before."""
    layers = []
    for path in paths or ():
        try:
            layers.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return Config.from_layers(layers)


def cluster_client(
    kubeconfig: str | None, *, in_cluster: bool = False, retries: int | None = None
) -> Any:
    """The API client `--kubeconfig` / `--in-cluster` name; a missing or broken kubeconfig is
    a CliError that names it."""
    from kubernetes.config import ConfigException

    from webhook.cluster.live import api_client

    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if in_cluster:
        where = "the in-cluster service account"
    elif kubeconfig and not Path(kubeconfig).is_file():
        raise CliError(f"kubeconfig {kubeconfig}: no such file", EXIT_CLUSTER)
    try:
        return api_client(kubeconfig=kubeconfig, in_cluster=in_cluster, retries=retries)
    except (ConfigException, OSError) as exc:
        raise CliError(f"kubeconfig {where}: {exc}", EXIT_CLUSTER) from None


def cluster_failure(exc: BaseException, what: str, client: Any) -> CliError | None:
    """What went wrong talking to the cluster, in one line, or None if `exc` is not that."""
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    server = getattr(getattr(client, "configuration", None), "host", "the cluster")
    if isinstance(exc, ApiException):
        reason = exc.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            reason = json.loads(exc.body or "{}").get("message") or reason
        return CliError(f"{server} refused to {what}: HTTP {exc.status}: {reason}", EXIT_CLUSTER)
    if isinstance(exc, HTTPError | OSError):
        cause = getattr(exc, "reason", None) or exc
        return CliError(f"cannot reach {server} to {what}: {_plain_cause(cause)}", EXIT_CLUSTER)
    if isinstance(exc, RuntimeError) and str(exc).startswith("GET "):  # live.get's statuses
        return CliError(f"{server} refused to {what}: {exc}", EXIT_CLUSTER)
    return None


def _plain_cause(cause: object) -> str:
    """`[Errno 111] Connection refused` out of urllib3's nested wrappers."""
    text = str(cause)
    start = text.find("[Errno")
    return text[start:].rstrip("')\"") if start >= 0 else text


def _serving_certs(args: argparse.Namespace) -> CertFiles:
    """The certificate files to serve with, made, reused or issued again (logged which)."""
    from certs import files as cert_files

    try:
        certs, done, missing = cert_files.ensure(
            args.cert_dir, service=args.service, namespace=args.namespace
        )
    except OSError as exc:
        raise CliError(
            f"cannot write certificates in {args.cert_dir}: {exc.strerror or exc}; "
            "choose another --cert-dir",
            EXIT_LOCAL,
        ) from None
    except ValueError as exc:  # a tls.crt or ca.crt that is not a PEM certificate
        raise CliError(
            f"{args.cert_dir}: a certificate there cannot be read ({exc}); replace it, or "
            "remove the directory's files to have new ones made",
            EXIT_USAGE,
        ) from None
    if done == "made":
        log.info(
            "made a local CA and serving certificate",
            extra={"ca": str(certs.ca_cert), "cert": str(certs.cert)},
        )
    elif done == "re-issued":
        log.info(
            "serving certificate issued again from its CA, for the names now asked for",
            extra={"cert": str(certs.cert), "service": f"{args.service}.{args.namespace}"},
        )
    elif missing:
        log.warning(
            "the serving certificate lacks names the API server may call us by; issue it "
            "again (stateful-guard certs) or pass the --service/--namespace it was made for",
            extra={"cert": str(certs.cert), "missing": missing},
        )
    return certs


def _serve(args: argparse.Namespace) -> int:
    from certs.reload import ReloadingContext
    from webhook.cluster.live import LiveView
    from webhook.serving.metrics import Metrics
    from webhook.serving.server import Limits, ListenError, ServerState, make_app, serve

    config = load_config(args.config)
    certs = _serving_certs(args)
    try:
        tls = ReloadingContext(certs.cert, certs.key, args.client_ca)
    except OSError as exc:  # a file missing, or not what TLS needs (ssl.SSLError is one)
        named = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
        raise CliError(
            f"cannot load the TLS files ({certs.cert}, {certs.key}"
            f"{f', --client-ca {args.client_ca}' if args.client_ca else ''}): {named}",
            EXIT_USAGE,
        ) from None
    metrics = Metrics()
    metrics.count_certificate_reloads(lambda: tls.reloads)
    jobs: list[Job] = [lambda: tls.watch(args.cert_reload_interval)]
    live: LiveView | None = None
    view: ClusterView
    if args.kubeconfig or args.in_cluster:
        client = cluster_client(args.kubeconfig, in_cluster=args.in_cluster)
        live = view = LiveView(client)
        live.start()
        metrics.watch_view(live)
        log.info("cluster view from the API server: list+watch started")
    elif args.objects:
        view = MemoryView(m.object for m in load(args.objects))
        log.info("cluster view from manifests", extra={"objects": len(view)})
    else:
        view = MemoryView.empty()
        log.warning(
            "no cluster view: running without a cluster; policies that need cluster objects "
            "let their failure mode decide (pass --objects FILE to give them some)"
        )
    engine = Engine(view, config)
    recorder = None
    if live is not None:
        from webhook.cluster.events import EventRecorder

        jobs += _leader_jobs(args, live, engine, metrics)
        recorder = EventRecorder(
            live.client,
            live,
            instance=_identity(),
            count=lambda result: metrics.events.labels(result).inc(),
        )
        jobs.append(recorder.run)
    state = ServerState(
        engine=engine,
        metrics=metrics,
        ready=live.ready if live else lambda: True,
        jobs=jobs,
        limits=Limits(max_connections=args.max_connections) if args.max_connections else Limits(),
        record=recorder.submit if recorder else None,
    )
    host, port = args.listen
    if host in ("0.0.0.0", "::"):  # noqa: S104 - said, not silent
        log.info("listening on every address of this machine", extra={"listen": host})
    try:
        asyncio.run(
            serve(
                make_app(state),
                host=host,
                port=port,
                ssl_context=tls.context,
                shutdown_timeout=args.shutdown_timeout,
                shutdown_delay=args.shutdown_delay,
                ops=args.ops_listen,
                started=lambda listen, ops: log.info(
                    "serving (Ctrl-C stops, after --shutdown-delay; a second Ctrl-C at once)",
                    extra={"listen": listen, "ops": ops, "cert": str(certs.cert)},
                ),
            )
        )
    except ListenError as exc:
        raise CliError(
            f"{exc.strerror}; choose another --listen or --ops-listen", EXIT_LOCAL
        ) from None
    finally:
        if live is not None:
            live.stop()
    return 0


def _leader_jobs(
    args: argparse.Namespace, live: LiveView, engine: Engine, metrics: Metrics
) -> list[Job]:
    """Leader election, and what only the leader does: managed Services and budgets,
    PolicyReports; and,
    on every replica, the data webhooks made fail-closed once the API server reaches us."""
    from policies.base import Policy
    from policies.headless_service import POLICY as HEADLESS_SERVICE
    from policies.modes import Mode
    from policies.quorum import POLICY as QUORUM
    from webhook.audits import policyreports
    from webhook.cluster.lease import LeaseElector, periodically
    from webhook.cluster.reconcile import guarded_namespaces, reconcile_once
    from webhook.cluster.writer import ClusterWriter

    writer = ClusterWriter(live.client)
    elector = LeaseElector(live.client, namespace=args.namespace, identity=_identity())

    def reconcile() -> list[str]:
        selector = writer.mutating_namespace_selector()
        config = engine.config

        def enforced(policy: Policy) -> Callable[[str], bool]:
            return lambda namespace: engine.mode_for(policy, namespace) is Mode.ENFORCE

        def budgets(namespace: str) -> bool:
            return config.disruption_budgets_for(namespace) and enforced(QUORUM)(namespace)

        done = reconcile_once(
            live,
            writer,
            grace=args.managed_service_grace,
            delay=args.managed_service_delay,
            guarded=guarded_namespaces(
                live, selector, enforced=enforced(HEADLESS_SERVICE), own_namespace=args.namespace
            ),
            # Unread webhook configuration: budgets stay as they are (none made, none deleted).
            budgets=None
            if selector is None
            else guarded_namespaces(live, selector, enforced=budgets, own_namespace=args.namespace),
        )
        for line in done:
            action, kind = line.split(" ", 2)[:2]
            metrics.managed_objects.labels(kind, action).inc()
        return done

    jobs: list[Job] = [
        elector.run,
        lambda: elector.while_leading(
            args.reconcile_interval, reconcile, what="reconcile managed objects"
        ),
        # Shipped `Ignore`, the data webhooks turn `Fail` only once this replica's view is
        # ready and the API server has called it: an install that never serves locks out
        # nothing, and a running one fails closed (README "Install in a cluster").
        lambda: periodically(
            args.reconcile_interval,
            writer.fail_closed,
            what="fail closed once reached",
            when=lambda: live.ready() and metrics.answered() > 0,
        ),
    ]
    if args.audit_interval > 0:
        jobs.append(
            lambda: elector.while_leading(
                args.audit_interval,
                partial(policyreports.refresh, live.client, engine.config),
                what="background audit",
            )
        )
    return jobs


def _identity() -> str:
    """This replica's name in the Lease: the pod's name in a cluster."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def _audit(args: argparse.Namespace) -> int:
    """Judge manifests (-f) or a live cluster; the exit code says how it went (EXIT_*)."""
    if not args.cluster:
        stray = [f for f in ("report", "kubeconfig", "in_cluster") if getattr(args, f)]
        if stray:
            flags = ", ".join("--" + f.replace("_", "-") for f in stray)
            raise CliError(f"{flags}: only with --cluster", EXIT_USAGE)
    config = load_config(args.config)
    unreadable: list[ManifestError] = []
    with collector.paused():  # what is read lives until the report is written
        extra = [m.object for m in load(args.objects)] if args.objects else []
        if args.cluster:
            from webhook.audits import policyreports
            from webhook.cluster.live import cluster_objects

            client = cluster_client(args.kubeconfig, in_cluster=args.in_cluster, retries=0)
            objects = _from_cluster(client, "list its objects", lambda: cluster_objects(client))
        else:
            manifests = load(args.file, unreadable=unreadable)
    collector.settle(collect=False)
    if args.cluster:
        view = MemoryView([*objects, *extra])
        report = judge(Engine(view, config), cluster_subjects(objects))
        if args.report:
            reports = policyreports.policy_reports(report)
            written = _from_cluster(
                client, "write PolicyReports", lambda: policyreports.write(client, reports)
            )
            for done in written:
                print(done, file=sys.stderr)
    else:
        view = MemoryView([*(m.object for m in manifests), *extra])
        report = judge(Engine(view, config), manifest_subjects(manifests))
        for error in unreadable:
            report.add_unreadable(error.source, error.line, str(error))
    sys.stdout.write(render(report, args.output))
    if report.unreadable:
        return EXIT_USAGE
    if not report.judged and not args.allow_empty:
        where = "the cluster" if args.cluster else " ".join(args.file)
        print(
            f"stateful-guard: nothing to judge in {where}: no StatefulSet, "
            "PersistentVolumeClaim, Deployment or ReplicaSet (a failed `helm template` "
            "upstream?); --allow-empty accepts that",
            file=sys.stderr,
        )
        return EXIT_NOTHING
    return EXIT_FAILED if report.failed else EXIT_OK


def _from_cluster(client: Any, what: str, call: Callable[[], T]) -> T:
    """`call`'s result; a failure talking to the cluster is a CliError that says what."""
    try:
        return call()
    except Exception as exc:
        failure = cluster_failure(exc, what, client)
        if failure is None:
            raise
        raise failure from None


def _exception_create(args: argparse.Namespace) -> int:
    """Print (or apply) a GuardException: the reviewable, expiring way past a guard."""
    import datetime as dt

    import yaml

    config = load_config(args.config)
    targets = [(flag, ref) for flag in exceptions.FLAGS for ref in getattr(args, flag) or []]
    flags = {flag for flag, _ in targets}
    if len(flags) != 1:
        raise ConfigError(
            "name the objects with one of --pod, --claim, --statefulset, --deployment, "
            "--replicaset (NAMESPACE/NAME, repeatable), all of one kind"
        )
    namespaces = {ref.partition("/")[0] for _, ref in targets}
    if any("/" not in ref for _, ref in targets) or len(namespaces) != 1:
        raise ConfigError("objects are NAMESPACE/NAME, all in one namespace")
    try:
        lasting = exceptions.parse_duration(args.lasting)
    except ValueError as exc:
        raise ConfigError(f"--for: {exc}") from exc
    if lasting > config.longest_exception:
        longest = exceptions.shown_duration(config.longest_exception)
        raise ConfigError(
            f"--for {args.lasting} is longer than the {longest} an exception may last "
            "(exceptions.maxDuration); write a new one when this one ends"
        )
    try:
        body = exceptions.manifest(
            namespace=namespaces.pop(),
            policies=args.policy,
            kind=exceptions.FLAGS[flags.pop()],
            names=[ref.partition("/")[2] for _, ref in targets],
            reason=args.reason,
            now=dt.datetime.now(dt.UTC),
            lasting=lasting,
            users=args.user,
            groups=args.group,
            approved_by=args.approved_by or "",
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if not args.apply:
        sys.stdout.write(yaml.safe_dump(body, sort_keys=False))
        return 0
    from kubernetes import client

    api = cluster_client(args.kubeconfig, retries=0)
    meta = body["metadata"]
    _from_cluster(
        api,
        "create the GuardException",
        lambda: client.CustomObjectsApi(api).create_namespaced_custom_object(
            exceptions.GROUP, exceptions.VERSION, meta["namespace"], exceptions.PLURAL, body
        ),
    )
    print(f"guardexception.{exceptions.GROUP}/{meta['name']} created in {meta['namespace']}")
    return 0


EXIT_CODES = """exit codes:
  0  done; audit: no enforce-mode policy failed
  1  audit: an enforce-mode policy failed
  2  bad options, an unreadable config or manifest
  3  the cluster: kubeconfig missing or broken, unreachable, or it refused us
  4  audit: nothing to judge (--allow-empty makes it 0)
  5  this machine: an address in use, a directory that cannot be written"""
# The Kubernetes APIs spoken: the webhook's wire format and the kinds it judges and writes.
APIS = (
    "admission.k8s.io/v1",
    "apps/v1",
    "v1",
    "policy/v1",
    "stateful-guard.io/v1alpha1",
    "wgpolicyk8s.io/v1alpha2",
)


def version_line() -> str:
    return f"stateful-guard {package_version()}"


def _version(_: argparse.Namespace) -> int:
    print(version_line())
    print(f"Kubernetes APIs: {', '.join(APIS)} (tested with kube-apiserver v1.35)")
    return EXIT_OK


def _certs(args: argparse.Namespace) -> int:
    from certs import files as cert_files

    try:
        files = cert_files.issue(
            args.out,
            service=args.service,
            namespace=args.namespace,
            dns_names=args.dns,
            ips=args.ip,
            days=args.days,
        )
    except OSError as exc:
        raise CliError(f"cannot write into {args.out}: {exc.strerror or exc}", EXIT_LOCAL) from None
    for path in (files.ca_cert, files.cert, files.key):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stateful-guard",
        description="Admission webhook and policy service for stateful Kubernetes workloads.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_line())
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="how much to log, as JSON lines on stderr",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the TLS admission webhook",
        parents=[common],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve POST /mutate and /validate (AdmissionReview v1) over TLS, and "
        "/healthz, /readyz, /metrics on a plain-HTTP ops port. With no certificate in "
        "--cert-dir it makes a local CA and a serving certificate there, once. The cluster "
        "view comes from --kubeconfig or --in-cluster (list+watch), or --objects manifests; "
        "with none it is empty (logged). Ctrl-C or SIGTERM stops it after --shutdown-delay; "
        "a second Ctrl-C stops it at once. Config changes need a restart.",
    )
    serve.add_argument(
        "--listen",
        type=parse_listen,
        default="127.0.0.1:8443",
        metavar="HOST:PORT",
        help="HTTPS address: HOST:PORT, [IPv6]:PORT, or :PORT for every address (said in the "
        "log); port 0 picks a free one (logged)",
    )
    serve.add_argument(
        "--cert-dir",
        type=Path,
        default=DEFAULT_CERT_DIR,
        help="tls.crt/tls.key, reloaded when they change; made here with a local CA when "
        "missing (with the SANs of --service and --namespace)",
    )
    serve.add_argument(
        "--config",
        type=Path,
        action="append",
        help="policy configuration file (YAML); repeated, each over the ones before (a profile)",
    )
    view = serve.add_mutually_exclusive_group()
    view.add_argument("--kubeconfig", help="watch the cluster this kubeconfig names")
    view.add_argument(
        "--in-cluster",
        action="store_true",
        help="watch the cluster we run in, with the pod's service account",
    )
    view.add_argument(
        "--objects",
        action="append",
        metavar="PATH",
        help="manifests to use as the cluster view (file, directory or -)",
    )
    serve.add_argument(
        "--ops-listen",
        type=parse_listen,
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="plain-HTTP address for /healthz, /readyz and /metrics",
    )
    serve.add_argument(
        "--max-connections",
        type=count,
        metavar="N",
        help="close new connections past this many on each port (256 when not given)",
    )
    serve.add_argument(
        "--client-ca", type=Path, help="require API server client certificates signed by this CA"
    )
    serve.add_argument(
        "--service", default=DEFAULT_SERVICE, help="Service name for the certificate's SANs"
    )
    serve.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help="namespace for the certificate's SANs"
    )
    serve.add_argument(
        "--cert-reload-interval",
        type=seconds(above=0),
        default=5.0,
        metavar="SECONDS",
        help="how often to look for changed certificate files",
    )
    serve.add_argument(
        "--reconcile-interval",
        type=seconds(above=0),
        default=30.0,
        metavar="SECONDS",
        help="how often the leader reconciles managed headless Services and budgets",
    )
    serve.add_argument(
        "--audit-interval",
        type=seconds(),
        default=0.0,
        metavar="SECONDS",
        help="the leader audits the cluster and refreshes PolicyReports this often (0: off)",
    )
    serve.add_argument(
        "--managed-service-delay",
        type=seconds(),
        default=10.0,
        metavar="SECONDS",
        help="create a marked set's missing headless Service (a quorum set's budget) once "
        "the set is this old",
    )
    serve.add_argument(
        "--managed-service-grace",
        type=seconds(),
        default=600.0,
        metavar="SECONDS",
        help="delete an unowned managed Service (made by an earlier release) whose "
        "StatefulSet has not appeared after this long",
    )
    serve.add_argument(
        "--shutdown-delay",
        type=seconds(),
        default=5.0,
        metavar="SECONDS",
        help="after SIGTERM, keep serving this long, not ready, before closing the port",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=seconds(),
        default=20.0,
        metavar="SECONDS",
        help="how long in-flight requests may finish after SIGTERM",
    )
    serve.set_defaults(func=_serve)

    audit = commands.add_parser(
        "audit",
        parents=[common],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="judge manifests or a live cluster with the same policies, changing nothing",
        description="Judge each StatefulSet, PVC, Deployment and ReplicaSet as if it were being "
        "created. Exit 0: nothing refused; 1: an enforce-mode policy failed; 2: unreadable "
        "input (the other files are still judged); 3: the cluster could not be read; 4: "
        "nothing to judge.",
    )
    source = audit.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-f",
        "--file",
        action="append",
        metavar="PATH",
        help="manifests: a file, a directory (recursive) or - for stdin; "
        "they are also the cluster view",
    )
    source.add_argument(
        "--cluster",
        action="store_true",
        help="every object in the cluster (kubeconfig, or --in-cluster)",
    )
    audit.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="table",
        help="table (fits the terminal; full messages in json), json, sarif or junit",
    )
    audit.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 when the input holds nothing to judge (otherwise 4)",
    )
    audit.add_argument(
        "--objects",
        action="append",
        metavar="PATH",
        help="more cluster objects for the view, e.g. the cluster's StorageClasses",
    )
    audit.add_argument(
        "--config",
        type=Path,
        action="append",
        help="policy configuration file (YAML); repeated, each over the ones before (a profile)",
    )
    audit.add_argument("--kubeconfig", help="with --cluster: the cluster this kubeconfig names")
    audit.add_argument(
        "--in-cluster", action="store_true", help="with --cluster: the cluster we run in"
    )
    audit.add_argument(
        "--report",
        action="store_true",
        help="with --cluster: write wgpolicyk8s.io PolicyReports, one per namespace",
    )
    audit.set_defaults(func=_audit)

    _exception_parser(commands, common)
    version = commands.add_parser(
        "version", help="print the version and the Kubernetes APIs it speaks"
    )
    version.set_defaults(func=_version)

    certs = commands.add_parser(
        "certs",
        help="make a CA and a serving certificate",
        parents=[common],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write ca.crt (made once, reused) and a serving certificate for "
        "SERVICE.NAMESPACE.svc, localhost, 127.0.0.1 and ::1 into --out.",
    )
    certs.add_argument(
        "--out", type=Path, required=True, help="directory to write ca.crt, tls.crt, tls.key into"
    )
    certs.add_argument(
        "--service", default=DEFAULT_SERVICE, help="the webhook's Service name (DNS SANs)"
    )
    certs.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help="the webhook's namespace (DNS SANs)"
    )
    certs.add_argument("--dns", action="append", default=[], help="another DNS SAN (repeatable)")
    certs.add_argument(
        "--ip", action="append", default=[], type=ip_address, help="another IP SAN (repeatable)"
    )
    certs.add_argument(
        "--days",
        type=positive_days,
        default=365,
        help="how long the serving certificate is valid, in days (1 or more)",
    )
    certs.set_defaults(func=_certs)
    return parser


def _exception_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    exception = commands.add_parser(
        "exception", help="write GuardExceptions: the reviewable, expiring way past a guard"
    )
    exception_commands = exception.add_subparsers(dest="exception_command", required=True)
    create = exception_commands.add_parser(
        "create",
        parents=[common],
        help="print (or --apply) a GuardException for some objects",
        description="A GuardException lets the named objects past the named policies until it "
        "expires; only holders of the ClusterRole stateful-guard-exception-writer may create "
        "one. Printed as YAML to review and apply, or created with --apply.",
    )
    create.add_argument(
        "--policy",
        action="append",
        required=True,
        choices=[p.id for p in POLICIES if p.exceptable],
        help="a policy it lets past (repeatable)",
    )
    for flag, kind in exceptions.FLAGS.items():
        create.add_argument(
            f"--{flag}", action="append", metavar="NAMESPACE/NAME", help=f"a {kind} (repeatable)"
        )
    create.add_argument(
        "--for",
        dest="lasting",
        required=True,
        metavar="DURATION",
        help="how long it is in force: 30m, 1h, 2d (at most exceptions.maxDuration, 7d)",
    )
    create.add_argument("--reason", required=True, help="why: an incident, a ticket")
    create.add_argument(
        "--user", action="append", default=[], help="only this user may act under it"
    )
    create.add_argument(
        "--group", action="append", default=[], help="only this group may act under it"
    )
    create.add_argument("--approved-by", help="who approved it, for the record")
    create.add_argument("--apply", action="store_true", help="create it in the cluster")
    create.add_argument("--kubeconfig", help="with --apply: the cluster this kubeconfig names")
    create.add_argument(
        "--config",
        type=Path,
        action="append",
        help="policy configuration file, for exceptions.maxDuration",
    )
    create.set_defaults(func=_exception_create)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(getattr(args, "log_level", "info"))
    try:
        result: int = args.func(args)
    except (ConfigError, ManifestError) as exc:
        print(f"stateful-guard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"stateful-guard: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
