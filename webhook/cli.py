"""The `stateful-guard` command: serve the webhook, audit, make certificates.

An offline audit (`audit -f`, often run in CI on a few files) imports neither aiohttp nor the
Kubernetes client, about half a second of start-up: the commands that use them import them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policies import exceptions
from policies.config import Config, ConfigError
from policies.registry import POLICIES
from webhook import collector, logs
from webhook.audits.audit import cluster_subjects, judge, manifest_subjects
from webhook.audits.outputs import FORMATS, render
from webhook.cluster.manifests import ManifestError, load
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

if TYPE_CHECKING:
    from policies.view import ClusterView
    from webhook.cluster.live import LiveView
    from webhook.serving.metrics import Metrics
    from webhook.serving.server import Job

log = logging.getLogger("stateful_guard.cli")

DEFAULT_CERT_DIR = Path(".stateful-guard/certs")
DEFAULT_SERVICE = "stateful-guard"
DEFAULT_NAMESPACE = os.environ.get("POD_NAMESPACE", "stateful-guard")


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT; port 0 picks a free one (logged at start)."""
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":8443"


def load_config(paths: Sequence[Path] | None) -> Config:
    """The config from `--config` files, each later one over the ones before."""
    layers = []
    for path in paths or ():
        try:
            layers.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return Config.from_layers(layers)


def _serve(args: argparse.Namespace) -> int:
    from certs import files as cert_files
    from certs.reload import ReloadingContext
    from webhook.cluster.live import LiveView, api_client
    from webhook.serving.metrics import Metrics
    from webhook.serving.server import Limits, ServerState, make_app, serve

    config = load_config(args.config)
    certs, made = cert_files.ensure(args.cert_dir, service=args.service, namespace=args.namespace)
    if made:
        log.info(
            "made a local CA and serving certificate",
            extra={"ca": str(certs.ca_cert), "cert": str(certs.cert)},
        )
    tls = ReloadingContext(certs.cert, certs.key, args.client_ca)
    metrics = Metrics()
    metrics.cert_reloads.set_function(lambda: tls.reloads)
    jobs: list[Job] = [lambda: tls.watch(args.cert_reload_interval)]
    live: LiveView | None = None
    view: ClusterView
    if args.kubeconfig or args.in_cluster:
        client = api_client(kubeconfig=args.kubeconfig, in_cluster=args.in_cluster)
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
                started=lambda: log.info(
                    "serving",
                    extra={
                        "listen": f"https://{host}:{port}",
                        "ops": "http://{}:{}".format(*args.ops_listen),
                        "cert": str(certs.cert),
                    },
                ),
            )
        )
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
    """Judge manifests (-f) or a live cluster; exit 1 when an enforce-mode policy fails."""
    config = load_config(args.config)
    with collector.paused():  # what is read lives until the report is written
        extra = [m.object for m in load(args.objects)] if args.objects else []
        if args.cluster:
            from webhook.audits import policyreports
            from webhook.cluster.live import api_client, cluster_objects

            client = api_client(kubeconfig=args.kubeconfig, in_cluster=args.in_cluster)
            objects = cluster_objects(client)
        else:
            manifests = load(args.file)
    collector.settle(collect=False)
    if args.cluster:
        view = MemoryView([*objects, *extra])
        report = judge(Engine(view, config), cluster_subjects(objects))
        if args.report:
            for done in policyreports.write(client, policyreports.policy_reports(report)):
                print(done, file=sys.stderr)
    else:
        view = MemoryView([*(m.object for m in manifests), *extra])
        report = judge(Engine(view, config), manifest_subjects(manifests))
    sys.stdout.write(render(report, args.output))
    return 1 if report.failed else 0


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

    from webhook.cluster.live import api_client

    api = client.CustomObjectsApi(api_client(kubeconfig=args.kubeconfig))
    meta = body["metadata"]
    api.create_namespaced_custom_object(
        exceptions.GROUP, exceptions.VERSION, meta["namespace"], exceptions.PLURAL, body
    )
    print(f"guardexception.{exceptions.GROUP}/{meta['name']} created in {meta['namespace']}")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from certs import files as cert_files

    files = cert_files.issue(
        args.out,
        service=args.service,
        namespace=args.namespace,
        dns_names=args.dns,
        ips=args.ip,
        days=args.days,
    )
    for path in (files.ca_cert, files.cert, files.key):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stateful-guard",
        description="Admission webhook and policy service for stateful Kubernetes workloads.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the TLS admission webhook", parents=[common])
    serve.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 8443),
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8443)",
    )
    serve.add_argument(
        "--cert-dir",
        type=Path,
        default=DEFAULT_CERT_DIR,
        help="tls.crt/tls.key; made here with a local CA when missing "
        f"(default {DEFAULT_CERT_DIR})",
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
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="plain-HTTP address for /healthz, /readyz and /metrics (default 127.0.0.1:8080)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="close new connections past this many on each port (default 256)",
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
    serve.add_argument("--cert-reload-interval", type=float, default=5.0, metavar="SECONDS")
    serve.add_argument(
        "--reconcile-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often the leader reconciles managed headless Services and budgets",
    )
    serve.add_argument(
        "--audit-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the leader audits the cluster and refreshes PolicyReports this often (0: off)",
    )
    serve.add_argument(
        "--managed-service-delay",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="create a marked set's missing headless Service (a quorum set's budget) once "
        "the set is this old",
    )
    serve.add_argument(
        "--managed-service-grace",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="delete an unowned managed Service (made by an earlier release) whose "
        "StatefulSet has not appeared after this long",
    )
    serve.add_argument(
        "--shutdown-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="after SIGTERM, keep serving this long, not ready, before closing the port",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long in-flight requests may finish after SIGTERM",
    )
    serve.set_defaults(func=_serve)

    audit = commands.add_parser(
        "audit",
        parents=[common],
        help="judge manifests or a live cluster with the same policies, changing nothing",
        description="Judge each StatefulSet, PVC, Deployment and ReplicaSet as if it were being "
        "created. Exit 1 when an enforce-mode policy fails, 0 otherwise, 2 for unreadable input.",
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
    audit.add_argument("-o", "--output", choices=FORMATS, default="table")
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

    certs = commands.add_parser(
        "certs", help="make a CA and a serving certificate", parents=[common]
    )
    certs.add_argument("--out", type=Path, required=True, help="directory to write into")
    certs.add_argument("--service", default=DEFAULT_SERVICE)
    certs.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    certs.add_argument("--dns", action="append", default=[], help="extra DNS SAN")
    certs.add_argument("--ip", action="append", default=[], help="extra IP SAN")
    certs.add_argument("--days", type=int, default=365, help="serving certificate validity")
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
    logs.setup(args.log_level)
    try:
        result: int = args.func(args)
    except (ConfigError, ManifestError) as exc:
        print(f"stateful-guard: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not isinstance(exc, _cluster_errors()):
            raise
        print(f"stateful-guard: cannot reach the cluster: {exc}", file=sys.stderr)
        return 2
    return result


def _cluster_errors() -> tuple[type[Exception], ...]:
    """What reaching a cluster raises; the client's own errors only if a command loaded it."""
    if "kubernetes" not in sys.modules:
        return (OSError, RuntimeError)
    from kubernetes import client, config

    return (OSError, config.ConfigException, client.ApiException, RuntimeError)


if __name__ == "__main__":
    sys.exit(main())
