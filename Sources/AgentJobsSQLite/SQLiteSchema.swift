/// The SQLite schema, one migration per version. Never edit a released migration: add a new one.
package enum SQLiteSchema {
    package static let migrations: [SQLiteDatabase.Migration] = [
        .init(
            version: 1, name: "initial",
            sql: """
                CREATE TABLE api_tokens (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    scope TEXT NOT NULL,
                    secret_hash TEXT NOT NULL UNIQUE,
                    created_at INTEGER NOT NULL,
                    revoked_at INTEGER
                );
                CREATE TABLE registration_tokens (
                    id TEXT PRIMARY KEY,
                    secret_hash TEXT NOT NULL UNIQUE,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    used_at INTEGER,
                    used_by_host_id TEXT
                );
                CREATE TABLE hosts (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    managed_agents TEXT NOT NULL,
                    credential_hash TEXT NOT NULL UNIQUE,
                    registered_at INTEGER NOT NULL,
                    last_seen_at INTEGER,
                    version TEXT
                );
                CREATE TABLE jobs (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    name TEXT NOT NULL,
                    host_id TEXT NOT NULL REFERENCES hosts(id),
                    agent_type TEXT NOT NULL,
                    parameters TEXT NOT NULL,
                    schedule_cron TEXT,
                    schedule_timezone TEXT,
                    timeout_seconds INTEGER NOT NULL,
                    queue_timeout_seconds INTEGER NOT NULL,
                    version INTEGER NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    last_run_id TEXT,
                    schedule_paused INTEGER NOT NULL DEFAULT 0,
                    missed_policy TEXT NOT NULL DEFAULT 'latest',
                    catch_up_window_seconds INTEGER NOT NULL DEFAULT 3600,
                    jitter_seconds INTEGER NOT NULL DEFAULT 0,
                    schedule_cursor INTEGER,
                    next_occurrence_at INTEGER,
                    schedule_due_at INTEGER
                );
                CREATE INDEX jobs_by_host ON jobs(host_id);
                CREATE INDEX jobs_schedule_due ON jobs(schedule_due_at) WHERE schedule_due_at IS NOT NULL;
                -- One row per (job, occurrence): what the scheduler did with it. The key makes each occurrence
                -- fire at most once, whichever replica gets there first.
                CREATE TABLE schedule_occurrences (
                    job_id TEXT NOT NULL,
                    scheduled_at INTEGER NOT NULL,
                    outcome TEXT NOT NULL,
                    run_id TEXT,
                    active_run_id TEXT,
                    reason TEXT,
                    recorded_at INTEGER NOT NULL,
                    PRIMARY KEY (job_id, scheduled_at)
                );
                CREATE TABLE runs (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    job_id TEXT NOT NULL,
                    job_name TEXT NOT NULL,
                    job_version INTEGER NOT NULL,
                    host_id TEXT NOT NULL,
                    agent_type TEXT NOT NULL,
                    parameters TEXT NOT NULL,
                    timeout_seconds INTEGER NOT NULL,
                    queue_timeout_seconds INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    trigger TEXT NOT NULL,
                    scheduled_at INTEGER,
                    queued_at INTEGER NOT NULL,
                    started_at INTEGER,
                    finished_at INTEGER,
                    exit_code INTEGER,
                    error_summary TEXT,
                    cancel_requested_at INTEGER,
                    dispatch_epoch INTEGER NOT NULL DEFAULT 1
                );
                -- The one-active-run rule, enforced by the database for every writer.
                CREATE UNIQUE INDEX runs_one_active_per_job ON runs(job_id) WHERE status IN ('queued', 'running');
                CREATE UNIQUE INDEX runs_one_per_occurrence ON runs(job_id, scheduled_at) WHERE scheduled_at IS NOT NULL;
                CREATE INDEX runs_by_job ON runs(job_id, seq);
                CREATE INDEX runs_by_host ON runs(host_id, seq);
                CREATE INDEX runs_by_status ON runs(status, seq);
                CREATE INDEX runs_by_agent_type ON runs(agent_type, seq);
                CREATE TABLE outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    topic TEXT NOT NULL,
                    key TEXT NOT NULL,
                    type TEXT NOT NULL,
                    payload BLOB NOT NULL,
                    run_id TEXT,
                    created_at INTEGER NOT NULL,
                    sent_at INTEGER
                );
                CREATE INDEX outbox_pending ON outbox(seq) WHERE sent_at IS NULL;
                CREATE INDEX outbox_by_run ON outbox(run_id);
                """),
        .init(
            version: 2, name: "message log",
            sql: """
                -- The embedded message transport (SQLiteMessageLog): Kafka's model in tables.
                CREATE TABLE log_topics (
                    name TEXT PRIMARY KEY,
                    partition_count INTEGER NOT NULL CHECK (partition_count > 0),
                    created_at INTEGER NOT NULL
                );
                -- One row per partition: the next offset to assign keeps offsets dense and increasing
                -- even after retention deleted every message of the partition.
                CREATE TABLE log_partitions (
                    topic TEXT NOT NULL REFERENCES log_topics(name),
                    partition_index INTEGER NOT NULL,
                    next_offset INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (topic, partition_index)
                ) WITHOUT ROWID;
                CREATE TABLE log_messages (
                    topic TEXT NOT NULL,
                    partition_index INTEGER NOT NULL,
                    message_offset INTEGER NOT NULL,
                    key BLOB,
                    value BLOB NOT NULL,
                    headers BLOB,
                    appended_at INTEGER NOT NULL,
                    PRIMARY KEY (topic, partition_index, message_offset)
                ) WITHOUT ROWID;
                -- Next offset to read per (group, topic, partition); only ever moves forward.
                CREATE TABLE log_commits (
                    group_id TEXT NOT NULL,
                    topic TEXT NOT NULL,
                    partition_index INTEGER NOT NULL,
                    next_offset INTEGER NOT NULL,
                    committed_at INTEGER NOT NULL,
                    PRIMARY KEY (group_id, topic, partition_index)
                ) WITHOUT ROWID;
                -- Group membership: one member of a group owns all its partitions while its lease lasts.
                -- `generation` grows on every takeover and fences commits of earlier owners.
                CREATE TABLE log_group_leases (
                    group_id TEXT PRIMARY KEY,
                    owner TEXT NOT NULL,
                    generation INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL
                );
                """),
        .init(
            version: 3, name: "last run from runs_by_job",
            sql: """
                -- A job's last run is its newest run (runs_by_job answers max(seq) per job). The pointer
                -- cost every trigger an UPDATE of a jobs row, a page on its own in the group commit.
                ALTER TABLE jobs DROP COLUMN last_run_id;
                """),
        .init(
            version: 4, name: "outbox payloads and unsent rows apart",
            sql: """
                -- Marking a row sent rewrote it; with its ~700-byte payload in the row that was a page
                -- written per four rows (the relay marks every row it publishes). Payloads get their own
                -- table, and a row is unsent while its sequence is in outbox_unsent: marking rows sent
                -- deletes a range of 8-byte rows instead of rewriting the outbox.
                CREATE TABLE outbox_payloads (
                    seq INTEGER PRIMARY KEY,
                    payload BLOB NOT NULL
                );
                INSERT INTO outbox_payloads (seq, payload) SELECT seq, payload FROM outbox;
                CREATE TABLE outbox_unsent (
                    seq INTEGER PRIMARY KEY
                );
                INSERT INTO outbox_unsent (seq) SELECT seq FROM outbox WHERE sent_at IS NULL;
                DROP INDEX outbox_pending;
                ALTER TABLE outbox DROP COLUMN payload;
                ALTER TABLE outbox DROP COLUMN sent_at;
                CREATE TRIGGER outbox_row_deleted AFTER DELETE ON outbox BEGIN
                    DELETE FROM outbox_payloads WHERE seq = old.seq;
                    DELETE FROM outbox_unsent WHERE seq = old.seq;
                END;
                """),
        .init(
            version: 5, name: "host tracking evidence",
            sql: """
                -- "Host lost" is decided on evidence: how far host tracking has read each partition of
                -- agentjobs.host-events without a break (probes read back), and which partition a
                -- host's heartbeats come from. last_seen_at is now when a heartbeat was received.
                ALTER TABLE hosts ADD COLUMN heartbeat_partition INTEGER;
                ALTER TABLE hosts ADD COLUMN clock_skew_ms INTEGER;
                -- An administrator revoked the host: its credential hash is replaced by a value no
                -- credential hashes to, so its API calls, heartbeats and events are refused.
                ALTER TABLE hosts ADD COLUMN revoked_at INTEGER;
                -- last_seen_at held the host's own clock until now: one running ahead would keep a
                -- dead host online; no value from the future survives.
                UPDATE hosts SET last_seen_at = MIN(last_seen_at, CAST(strftime('%s', 'now') AS INTEGER) * 1000)
                    WHERE last_seen_at IS NOT NULL;
                CREATE TABLE host_tracking (
                    partition INTEGER PRIMARY KEY,
                    since INTEGER NOT NULL,
                    read_through INTEGER NOT NULL,
                    tracker_id TEXT NOT NULL
                );
                -- Secrets of the control plane that its replicas share through the database (the key
                -- that signs host tracking's probes).
                CREATE TABLE control_plane_secrets (
                    name TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                );
                """),
        .init(
            version: 6, name: "registration token revocation",
            sql: """
                -- An administrator revoked an unused registration token: no host can register with it.
                ALTER TABLE registration_tokens ADD COLUMN revoked_at INTEGER;
                """),
        .init(
            version: 7, name: "trace context of outbox rows",
            sql: """
                -- The W3C traceparent of the request or schedule tick that wrote the row, sent as a
                -- header of its message; NULL when tracing is off.
                ALTER TABLE outbox ADD COLUMN trace_parent TEXT;
                """),
        .init(
            version: 8, name: "rerun links and requesters",
            sql: """
                -- A rerun ("Run again") names the run it repeats; NULL for every other trigger.
                ALTER TABLE runs ADD COLUMN rerun_of TEXT;
                -- Who triggered the run and who asked to cancel it (RunRequester's stored form:
                -- `kind` or `kind:id:name`); NULL for runs recorded before, and while nobody asked.
                ALTER TABLE runs ADD COLUMN triggered_by TEXT;
                ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT;
                -- Listing runs by the time they were queued (GET /api/v1/runs?since=&until=).
                CREATE INDEX runs_by_queued_at ON runs(queued_at);
                """),
        .init(
            version: 9, name: "retention of schedule occurrences",
            sql: """
                -- Retention deletes the oldest occurrences first (runs go by runs_by_queued_at).
                CREATE INDEX schedule_occurrences_by_recorded_at ON schedule_occurrences(recorded_at);
                """),
        .init(
            version: 10, name: "audit log",
            sql: """
                -- Every change through the API, written in the transaction of the change. Append-only:
                -- rows are never updated, and only retention deletes them (the oldest first).
                CREATE TABLE audit_log (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    at INTEGER NOT NULL,
                    action TEXT NOT NULL,
                    -- RunRequester's stored form; NULL for a command without a token.
                    actor TEXT,
                    actor_id TEXT,
                    target_kind TEXT NOT NULL,
                    target_id TEXT NOT NULL,
                    target_name TEXT,
                    summary TEXT
                );
                CREATE INDEX audit_log_by_target ON audit_log(target_id, seq);
                CREATE INDEX audit_log_by_actor ON audit_log(actor_id, seq);
                CREATE INDEX audit_log_by_kind ON audit_log(target_kind, seq);
                CREATE INDEX audit_log_by_at ON audit_log(at);
                CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log BEGIN
                    SELECT RAISE(ABORT, 'the audit log is append-only');
                END;
                """),
        .init(
            version: 11, name: "hosts paged by name",
            sql: """
                -- GET /api/v1/hosts pages by (name, id).
                CREATE INDEX hosts_by_name ON hosts(name, id);
                """),
        .init(
            version: 12, name: "host run capacity",
            sql: """
                -- As of the host's last heartbeat: its concurrency limit (NULL for none) and the runs
                -- it had launched, so a queued run can say it waits for a slot.
                ALTER TABLE hosts ADD COLUMN max_concurrent_runs INTEGER;
                ALTER TABLE hosts ADD COLUMN running_runs INTEGER;
                """),
        .init(
            version: 13, name: "retries",
            sql: """
                -- A job's retry policy (RetryPolicy's JSON); NULL for none.
                ALTER TABLE jobs ADD COLUMN retry_policy TEXT;
                -- A run's place in its retry chain, the attempt it retries, and the policy the chain
                -- copied from its job at the first attempt.
                ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
                ALTER TABLE runs ADD COLUMN retry_of TEXT;
                ALTER TABLE runs ADD COLUMN retry_policy TEXT;
                -- A retry waiting out its delay: its dispatch is written at this time, then NULL.
                ALTER TABLE runs ADD COLUMN held_until INTEGER;
                CREATE INDEX runs_held ON runs(held_until) WHERE held_until IS NOT NULL;
                -- A schedule occurrence starts one run; its retries carry the occurrence too.
                DROP INDEX runs_one_per_occurrence;
                CREATE UNIQUE INDEX runs_one_per_occurrence ON runs(job_id, scheduled_at)
                    WHERE scheduled_at IS NOT NULL AND attempt = 1;
                """),
        .init(
            version: 14, name: "webhooks",
            sql: """
                -- Webhook subscriptions: which run ends (`events`, comma-separated names) of which job
                -- (NULL: every job) are sent where, signed with `secret`.
                CREATE TABLE webhooks (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    url TEXT NOT NULL,
                    events TEXT NOT NULL,
                    job_id TEXT,
                    format TEXT NOT NULL,
                    secret TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                );
                -- One event for one subscription, written with what it tells of (a run's end, a host
                -- judged lost: `subject_id` is the run's or the host's id); its body is fixed then.
                CREATE TABLE webhook_deliveries (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    webhook_id TEXT NOT NULL,
                    event TEXT NOT NULL,
                    subject_id TEXT NOT NULL,
                    body BLOB NOT NULL,
                    status TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    created_at INTEGER NOT NULL,
                    next_attempt_at INTEGER,
                    last_attempt_at INTEGER,
                    last_status_code INTEGER,
                    last_error TEXT,
                    delivered_at INTEGER
                );
                CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
                CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, seq);
                CREATE INDEX webhook_deliveries_by_created_at ON webhook_deliveries(created_at);
                -- When host tracking last judged the host lost (host.lost is told once per silence);
                -- NULL again from its next heartbeat.
                ALTER TABLE hosts ADD COLUMN lost_at INTEGER;
                """),
        .init(
            version: 15, name: "run change count",
            sql: """
                -- Counts the changes of runs, whoever makes them, so that a reader can tell cheaply
                -- that runs changed (the console's live updates); one row, bumped by triggers.
                CREATE TABLE run_changes (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL);
                INSERT INTO run_changes (id, count) VALUES (1, 0);
                CREATE TRIGGER runs_inserted AFTER INSERT ON runs
                    BEGIN UPDATE run_changes SET count = count + 1 WHERE id = 1; END;
                CREATE TRIGGER runs_updated AFTER UPDATE ON runs
                    BEGIN UPDATE run_changes SET count = count + 1 WHERE id = 1; END;
                CREATE TRIGGER runs_deleted AFTER DELETE ON runs
                    BEGIN UPDATE run_changes SET count = count + 1 WHERE id = 1; END;
                """),
    ]
}
