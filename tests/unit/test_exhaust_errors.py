"""The one-line reasons the exhaust records: a worker's chained traceback, a lost PostgreSQL connection."""
import psycopg2

from cqube_spark.exhaust import job, requests

WORKER = ("\n  An exception was thrown from the Python worker. Please see the stack trace below.\n"
          "Traceback (most recent call last):\n  File \"connection.py\", line 1, in connect\n    sock.connect(sa)\n"
          "ConnectionRefusedError: [Errno 111] Connection refused\n\n"
          "During handling of the above exception, another exception occurred:\n\n"
          "Traceback (most recent call last):\n  File \"sources.py\", line 2, in flush\n    fetched = pipe.execute()\n"
          "redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused.\n\n"
          "\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException(PythonRunner.scala:645)\n"
          "Driver stacktrace:\nCaused by: org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
          "Other: not this one\n")


def test_a_chained_worker_traceback_gives_its_last_exception():
    assert job.short_reason(Exception(WORKER)) == ("redis.exceptions.ConnectionError: Error 111 connecting to "
                                                   "127.0.0.1:6379. Connection refused.")


def test_a_worker_error_with_a_multi_line_message_gives_its_first_line():
    text = "wrapper\nTraceback (most recent call last):\n  File \"a.py\"\nPiiError: wrong key\nsecond line\n"
    assert job.short_reason(Exception(text)) == "PiiError: wrong key"
    assert job.short_reason(ValueError("boom\nmore")) == "ValueError: boom"


def test_a_lost_postgres_connection_names_the_endpoint_and_the_first_error(monkeypatch):
    monkeypatch.setenv("CQUBE_POSTGRES_DSN", "postgresql://cqube:Pg-S3cret@db.example:6543/reports")
    try:
        try:
            raise psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis probably means...")
        except psycopg2.Error:
            raise psycopg2.InterfaceError("connection already closed")  # what `with conn` raises after it
    except psycopg2.Error as e:
        failed = requests.failure(e, "reading job_request")
    assert str(failed) == ("PostgreSQL at db.example:6543/reports failed while reading job_request: "
                           "OperationalError: server closed the connection unexpectedly")
    assert isinstance(failed, requests.PostgresFailed) and "S3cret" not in str(failed)
