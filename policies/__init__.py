"""stateful-guard's policies: pure functions from an admission request, a config and a
read-only cluster view to a decision. No HTTP, no Kubernetes client, no I/O here."""
