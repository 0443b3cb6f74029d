"""`podmedic serve`: the I/O shell around admission.handle -- Flask under gunicorn over TLS, the
workers' connection balancing and deadline, metrics and the audit sink."""
