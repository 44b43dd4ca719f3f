/// The PostgreSQL schema, one migration per version. Never edit a released migration: add a new one.
///
/// Version 1 is the final schema of the SQLite store (its migrations 1 and 3 to 6) in PostgreSQL
/// types, without the embedded message log (`log_*`, SQLite only). Times are `BIGINT` milliseconds
/// since 1970, as SQLite stores them. Text keys that lists are ordered by are `COLLATE "C"`, so that
/// PostgreSQL orders them byte by byte as SQLite's `BINARY` collation does, whatever the database's
/// locale.
package enum PostgresSchema {
    /// One schema version: statements run in order, inside the migration transaction. (One statement
    /// each: the extended query protocol postgres-nio speaks refuses several in one string.)
    struct Migration: Sendable {
        let version: Int32
        let name: String
        let statements: [String]
    }

    /// The key of the transaction-level advisory lock every replica takes before it migrates, so
    /// that replicas starting together migrate once ("ajobs_mg" in ASCII).
    package static let migrationLockKey: Int64 = 0x616A_6F62_735F_6D67

    /// The bookkeeping table, created (if missing) under the migration lock.
    static let migrationsTable = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version INT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )
        """

    static let migrations: [Migration] = [
        Migration(
            version: 1, name: "initial",
            statements: [
                """
                CREATE TABLE api_tokens (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    name TEXT NOT NULL,
                    scope TEXT NOT NULL,
                    secret_hash TEXT NOT NULL UNIQUE,
                    created_at BIGINT NOT NULL,
                    revoked_at BIGINT
                )
                """,
                """
                CREATE TABLE registration_tokens (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    secret_hash TEXT NOT NULL UNIQUE,
                    created_at BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL,
                    used_at BIGINT,
                    used_by_host_id TEXT,
                    revoked_at BIGINT
                )
                """,
                """
                CREATE TABLE hosts (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    name TEXT COLLATE "C" NOT NULL,
                    managed_agents TEXT NOT NULL,
                    credential_hash TEXT NOT NULL UNIQUE,
                    registered_at BIGINT NOT NULL,
                    last_seen_at BIGINT,
                    version TEXT,
                    heartbeat_partition INT,
                    clock_skew_ms BIGINT,
                    revoked_at BIGINT
                )
                """,
                """
                CREATE TABLE jobs (
                    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id TEXT COLLATE "C" NOT NULL UNIQUE,
                    name TEXT NOT NULL,
                    host_id TEXT COLLATE "C" NOT NULL REFERENCES hosts(id),
                    agent_type TEXT NOT NULL,
                    parameters TEXT NOT NULL,
                    schedule_cron TEXT,
                    schedule_timezone TEXT,
                    timeout_seconds INT NOT NULL,
                    queue_timeout_seconds INT NOT NULL,
                    version INT NOT NULL,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL,
                    schedule_paused BOOLEAN NOT NULL DEFAULT FALSE,
                    missed_policy TEXT NOT NULL DEFAULT 'latest',
                    catch_up_window_seconds INT NOT NULL DEFAULT 3600,
                    jitter_seconds INT NOT NULL DEFAULT 0,
                    schedule_cursor BIGINT,
                    next_occurrence_at BIGINT,
                    schedule_due_at BIGINT
                )
                """,
                "CREATE INDEX jobs_by_host ON jobs(host_id)",
                "CREATE INDEX jobs_schedule_due ON jobs(schedule_due_at) WHERE schedule_due_at IS NOT NULL",
                // One row per (job, occurrence): what the scheduler did with it. The key makes each
                // occurrence fire at most once, whichever replica gets there first.
                """
                CREATE TABLE schedule_occurrences (
                    job_id TEXT COLLATE "C" NOT NULL,
                    scheduled_at BIGINT NOT NULL,
                    outcome TEXT NOT NULL,
                    run_id TEXT,
                    active_run_id TEXT,
                    reason TEXT,
                    recorded_at BIGINT NOT NULL,
                    PRIMARY KEY (job_id, scheduled_at)
                )
                """,
                """
                CREATE TABLE runs (
                    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id TEXT COLLATE "C" NOT NULL UNIQUE,
                    job_id TEXT COLLATE "C" NOT NULL,
                    job_name TEXT NOT NULL,
                    job_version INT NOT NULL,
                    host_id TEXT COLLATE "C" NOT NULL,
                    agent_type TEXT NOT NULL,
                    parameters TEXT NOT NULL,
                    timeout_seconds INT NOT NULL,
                    queue_timeout_seconds INT NOT NULL,
                    status TEXT NOT NULL,
                    trigger TEXT NOT NULL,
                    scheduled_at BIGINT,
                    queued_at BIGINT NOT NULL,
                    started_at BIGINT,
                    finished_at BIGINT,
                    exit_code INT,
                    error_summary TEXT,
                    cancel_requested_at BIGINT,
                    dispatch_epoch INT NOT NULL DEFAULT 1
                )
                """,
                // The one-active-run rule, enforced by the database for every writer.
                "CREATE UNIQUE INDEX runs_one_active_per_job ON runs(job_id) WHERE status IN ('queued', 'running')",
                """
                CREATE UNIQUE INDEX runs_one_per_occurrence ON runs(job_id, scheduled_at)
                    WHERE scheduled_at IS NOT NULL
                """,
                "CREATE INDEX runs_by_job ON runs(job_id, seq)",
                "CREATE INDEX runs_by_host ON runs(host_id, seq)",
                "CREATE INDEX runs_by_status ON runs(status, seq)",
                "CREATE INDEX runs_by_agent_type ON runs(agent_type, seq)",
                // The outbox: a row per command, its payload apart, and a row in outbox_unsent while
                // it is unsent (marking rows sent deletes small rows instead of rewriting the outbox).
                // Deleting an outbox row takes its payload and unsent rows along (SQLite: a trigger).
                """
                CREATE TABLE outbox (
                    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    topic TEXT NOT NULL,
                    key TEXT NOT NULL,
                    type TEXT NOT NULL,
                    run_id TEXT COLLATE "C",
                    created_at BIGINT NOT NULL
                )
                """,
                "CREATE INDEX outbox_by_run ON outbox(run_id)",
                """
                CREATE TABLE outbox_payloads (
                    seq BIGINT PRIMARY KEY REFERENCES outbox(seq) ON DELETE CASCADE,
                    payload BYTEA NOT NULL
                )
                """,
                """
                CREATE TABLE outbox_unsent (
                    seq BIGINT PRIMARY KEY REFERENCES outbox(seq) ON DELETE CASCADE
                )
                """,
                // How far host tracking has read each partition of agentjobs.host-events.
                """
                CREATE TABLE host_tracking (
                    partition INT PRIMARY KEY,
                    since BIGINT NOT NULL,
                    read_through BIGINT NOT NULL,
                    tracker_id TEXT NOT NULL
                )
                """,
                // Secrets of the control plane that its replicas share through the database.
                """
                CREATE TABLE control_plane_secrets (
                    name TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                )
                """,
            ]),
        // Several `serve` replicas divide the outbox: each unsent row carries its shard, a hash of
        // its key (a host id; SHA-256, which FIPS-mode servers allow, where they refuse MD5)
        // computed here so that it never depends on a client's code, and each shard is leased to
        // one relay replica at a time. The 32 shards are `OutboxShards.count`.
        Migration(
            version: 2, name: "outbox shards",
            statements: [
                """
                CREATE FUNCTION agentjobs_outbox_shard(key TEXT) RETURNS INT
                LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE
                AS $$ SELECT (('x' || encode(substr(sha256(convert_to(key, 'UTF8')), 1, 4), 'hex'))::bit(32)::int
                    & 2147483647) % 32 $$
                """,
                "ALTER TABLE outbox_unsent ADD COLUMN shard INT",
                """
                UPDATE outbox_unsent u SET shard = agentjobs_outbox_shard(o.key) FROM outbox o WHERE o.seq = u.seq
                """,
                "ALTER TABLE outbox_unsent ALTER COLUMN shard SET NOT NULL",
                "CREATE INDEX outbox_unsent_by_shard ON outbox_unsent(shard, seq)",
                // Relay replicas announce themselves until `expires_at` (the database's clock), so
                // each can compute its fair share of the shards.
                """
                CREATE TABLE outbox_relays (
                    replica TEXT PRIMARY KEY,
                    expires_at TIMESTAMPTZ NOT NULL
                )
                """,
                // One row per shard: who publishes it, until when.
                """
                CREATE TABLE outbox_shard_leases (
                    shard INT PRIMARY KEY,
                    replica TEXT,
                    expires_at TIMESTAMPTZ NOT NULL
                )
                """,
                """
                INSERT INTO outbox_shard_leases (shard, replica, expires_at)
                SELECT shard, NULL, '-infinity' FROM generate_series(0, 31) AS shard
                """,
            ]),
        // The W3C traceparent of the request or schedule tick that wrote an outbox row, sent as a
        // header of its message; NULL when tracing is off.
        Migration(
            version: 3, name: "trace context of outbox rows",
            statements: ["ALTER TABLE outbox ADD COLUMN trace_parent TEXT"]),
        // A rerun ("Run again") names the run it repeats; NULL for every other trigger. Who triggered
        // a run and who asked to cancel it, in RunRequester's stored form (`kind` or `kind:id:name`);
        // NULL for runs recorded before, and while nobody asked.
        Migration(
            version: 4, name: "rerun links and requesters",
            statements: [
                "ALTER TABLE runs ADD COLUMN rerun_of TEXT",
                "ALTER TABLE runs ADD COLUMN triggered_by TEXT",
                "ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT",
                // Listing runs by the time they were queued (GET /api/v1/runs?since=&until=).
                "CREATE INDEX runs_by_queued_at ON runs (queued_at)",
            ]),
        // Retention deletes the oldest occurrences first (runs go by runs_by_queued_at).
        Migration(
            version: 5, name: "retention of schedule occurrences",
            statements: [
                "CREATE INDEX schedule_occurrences_by_recorded_at ON schedule_occurrences (recorded_at)"
            ]),
        // Every change through the API, written in the transaction of the change. Append-only: rows
        // are never updated, and only retention deletes them (the oldest first). `actor` is
        // RunRequester's stored form; NULL for a command without a token.
        Migration(
            version: 6, name: "audit log",
            statements: [
                """
                CREATE TABLE audit_log (
                    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    at BIGINT NOT NULL,
                    action TEXT NOT NULL,
                    actor TEXT,
                    actor_id TEXT COLLATE "C",
                    target_kind TEXT NOT NULL,
                    target_id TEXT COLLATE "C" NOT NULL,
                    target_name TEXT,
                    summary TEXT
                )
                """,
                "CREATE INDEX audit_log_by_target ON audit_log (target_id, seq)",
                "CREATE INDEX audit_log_by_actor ON audit_log (actor_id, seq)",
                "CREATE INDEX audit_log_by_kind ON audit_log (target_kind, seq)",
                "CREATE INDEX audit_log_by_at ON audit_log (at)",
                """
                CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'the audit log is append-only';
                END
                $$
                """,
                """
                CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
                FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
                """,
            ]),
        // GET /api/v1/hosts pages by (name, id).
        Migration(
            version: 7, name: "hosts paged by name", statements: ["CREATE INDEX hosts_by_name ON hosts (name, id)"]),
        // As of the host's last heartbeat: its concurrency limit (NULL for none) and the runs it had
        // launched, so a queued run can say it waits for a slot.
        Migration(
            version: 8, name: "host run capacity",
            statements: [
                "ALTER TABLE hosts ADD COLUMN max_concurrent_runs INT",
                "ALTER TABLE hosts ADD COLUMN running_runs INT",
            ]),
        // Retries: a job's policy (RetryPolicy's JSON, NULL for none); a run's place in its chain,
        // the attempt it retries and the policy the chain copied at its first attempt; and, on a
        // retry waiting out its delay, when its dispatch is written (then NULL).
        Migration(
            version: 9, name: "retries",
            statements: [
                "ALTER TABLE jobs ADD COLUMN retry_policy TEXT",
                "ALTER TABLE runs ADD COLUMN attempt INT NOT NULL DEFAULT 1",
                "ALTER TABLE runs ADD COLUMN retry_of TEXT",
                "ALTER TABLE runs ADD COLUMN retry_policy TEXT",
                "ALTER TABLE runs ADD COLUMN held_until BIGINT",
                "CREATE INDEX runs_held ON runs (held_until) WHERE held_until IS NOT NULL",
                // A schedule occurrence starts one run; its retries carry the occurrence too.
                "DROP INDEX runs_one_per_occurrence",
                """
                CREATE UNIQUE INDEX runs_one_per_occurrence ON runs (job_id, scheduled_at)
                    WHERE scheduled_at IS NOT NULL AND attempt = 1
                """,
            ]),
        // Webhook subscriptions (which events, comma-separated, of which job, NULL for every job,
        // are sent where, signed with `secret`) and their deliveries: one event for one
        // subscription, written with what it tells of (a run's end, a host judged lost: `subject_id`
        // is the run's or the host's id), its body fixed then.
        Migration(
            version: 10, name: "webhooks",
            statements: [
                """
                CREATE TABLE webhooks (
                    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id TEXT COLLATE "C" NOT NULL UNIQUE,
                    url TEXT NOT NULL,
                    events TEXT NOT NULL,
                    job_id TEXT COLLATE "C",
                    format TEXT NOT NULL,
                    secret TEXT NOT NULL,
                    created_at BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE webhook_deliveries (
                    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id TEXT COLLATE "C" NOT NULL UNIQUE,
                    webhook_id TEXT COLLATE "C" NOT NULL,
                    event TEXT NOT NULL,
                    subject_id TEXT COLLATE "C" NOT NULL,
                    body BYTEA NOT NULL,
                    status TEXT NOT NULL,
                    attempts INT NOT NULL DEFAULT 0,
                    created_at BIGINT NOT NULL,
                    next_attempt_at BIGINT,
                    last_attempt_at BIGINT,
                    last_status_code INT,
                    last_error TEXT,
                    delivered_at BIGINT
                )
                """,
                "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'",
                "CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq)",
                "CREATE INDEX webhook_deliveries_by_created_at ON webhook_deliveries (created_at)",
                // When host tracking last judged the host lost (host.lost is told once per silence);
                // NULL again from its next heartbeat.
                "ALTER TABLE hosts ADD COLUMN lost_at BIGINT",
            ]),
        .init(
            version: 11, name: "run change notifications",
            statements: [
                // Every change of a run, whoever makes it, notifies `agentjobs_run_changes` (one
                // notification per transaction: PostgreSQL folds identical ones, and delivers them
                // at commit), so that a control plane can tell the console at once that runs changed.
                """
                CREATE FUNCTION agentjobs_notify_run_changes() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('agentjobs_run_changes', '');
                    RETURN NULL;
                END
                $$
                """,
                """
                CREATE TRIGGER runs_notify_changes AFTER INSERT OR UPDATE OR DELETE ON runs
                    FOR EACH ROW EXECUTE FUNCTION agentjobs_notify_run_changes()
                """,
            ]),
    ]
}
