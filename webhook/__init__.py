"""stateful-guard's adapters: HTTP/TLS server, AdmissionReview wire format, engine,
cluster views, metrics, logs and the command line."""
