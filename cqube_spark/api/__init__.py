"""``cqube-spark serve``: the HTTP API beside the flow (emission, downloads, exhaust requests, admin views).

Rooms: ``config`` (serve.json + environment), ``auth`` (OIDC bearer JWTs against the issuer's JWKS; roles and
the ``cqube_scope`` claim), ``scope`` (hierarchy filters and path safety), ``signing`` (HMAC links),
``uploads`` (one-time upload grants in PostgreSQL), ``outputs`` (published files, filtered on read),
``tables`` (job_runs / file_tracker through delta-rs, no Spark), ``app`` (FastAPI routes), ``emit`` (the client).
The service never starts Spark: long work stays a job (intake, exhaust) that a scheduler runs.
"""
