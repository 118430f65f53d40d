"""Certificates for the webhook: a CA, serving certificates, files, and hot reload."""
