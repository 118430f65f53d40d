"""stateful-guard's adapters: HTTP/TLS server, AdmissionReview wire format, engine,
cluster views, metrics, logs and the command line."""

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed stateful-guard's version (a checkout run without installing: unknown)."""
    try:
        return version("stateful-guard")
    except PackageNotFoundError:
        return "unknown (not installed)"
