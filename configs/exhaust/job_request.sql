-- On-demand exhaust requests (upstream Sunbird columns). Applied by `cqube-spark exhaust init`
-- and before every exhaust run; idempotent.
CREATE TABLE IF NOT EXISTS job_request (
    tag               text        NOT NULL,
    request_id        text        NOT NULL,
    job_id            text        NOT NULL,
    status            text        NOT NULL,
    request_data      json        NOT NULL,
    requested_by      text        NOT NULL,
    requested_channel text        NOT NULL,
    dt_job_submitted  timestamp   NOT NULL,
    download_urls     text[],
    dt_file_created   timestamp,
    dt_job_completed  timestamp,
    execution_time    bigint,
    err_message       text,
    iteration         integer     NOT NULL DEFAULT 0,
    encryption_key    text,
    batch_number      integer,
    processed_batches text,
    PRIMARY KEY (tag, request_id)
);
CREATE INDEX IF NOT EXISTS job_request_request_id_idx ON job_request (request_id);
CREATE INDEX IF NOT EXISTS job_request_job_status_idx ON job_request (job_id, status);
