"""AdmissionReview v1 in, answer out: decoding, the pod-shape check, planning (engine, then
verification, memoised by pod template), responses and the audit record. Pure like the engine:
the server (HTTP, TLS, metrics, the audit sink) is the I/O shell around `handle.handle()`.
"""
