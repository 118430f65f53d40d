"""The HTTP edge: the TLS server and its limits, the AdmissionReview wire format, metrics."""
