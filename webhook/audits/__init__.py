"""Dry-run audits: the same policies over manifests or a live cluster, and their reports."""
