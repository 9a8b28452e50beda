"""On-demand exhausts: the consent-aware Program User report.

Flow: a request row in PostgreSQL ``job_request`` (``requests``) → the job (``job``) reads Cassandra
``program_enrollment`` + ``user_consent`` in parallel (``sources``), builds the report with pure Spark
transforms (``report``), fills PII from Redis and decrypts it inside the executors' partitions, streams the
CSV straight into an AES-256 zip (``sink``) and updates the request row. ``crypto`` holds the PII
encryption (AES-256-GCM), ``filters`` validates the request's filters, ``cli`` adds ``exhaust`` and ``pii``.
"""
JOB_ID = "program-user-exhaust"
