"""Program-user events: Kafka → Spark Structured Streaming → Cassandra ``program_enrollment``.

The program service publishes one JSON event to ``<env>.ml.programUsers.raw`` each time a user joins a
program or updates their profile in it. ``job`` (model ``program-user-events``) reads the topic with the
Kafka source, ``transforms`` parses each message with a declared schema and maps it to the table's columns
(pure Spark SQL functions), ``cassandra`` upserts the latest version of each (program_id, user_id) with
``USING TIMESTAMP <updatedAt>`` from the executors, and ``dead_letter`` keeps every bad message (raw bytes,
topic/partition/offset, reason) in a Delta table. Offsets are committed only after both writes succeeded.
"""
