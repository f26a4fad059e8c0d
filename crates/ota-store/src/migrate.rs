//! Schema migrations: an ordered list, each with SQLite and PostgreSQL text.
//!
//! Applied in one transaction under a lock (`BEGIN IMMEDIATE` on SQLite, an
//! advisory transaction lock on PostgreSQL), so several servers starting at
//! once against one database apply each migration exactly once.

use crate::catalogue::{Backend, StoreError};
use sqlx::{AnyConnection, Executor, Row};

struct Migration {
    version: i64,
    sqlite: &'static [&'static str],
    postgres: &'static [&'static str],
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sqlite: &[
        "CREATE TABLE ota (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            branch TEXT NOT NULL,
            content TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            UNIQUE (name, branch, version))",
        "CREATE INDEX ota_sha256 ON ota (sha256)",
        "CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            key_id TEXT NOT NULL UNIQUE,
            secret_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER)",
        "CREATE TABLE catalogue_generation (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL)",
        "INSERT INTO catalogue_generation (id, generation) VALUES (1, 0)",
    ],
    postgres: &[
        "CREATE TABLE ota (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            branch TEXT NOT NULL,
            content TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            UNIQUE (name, branch, version))",
        "CREATE INDEX ota_sha256 ON ota (sha256)",
        "CREATE TABLE api_keys (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            key_id TEXT NOT NULL UNIQUE,
            secret_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            revoked_at BIGINT)",
        "CREATE TABLE catalogue_generation (id BIGINT PRIMARY KEY, generation BIGINT NOT NULL)",
        "INSERT INTO catalogue_generation (id, generation) VALUES (1, 0)",
    ],
},
// Keys get scopes (existing keys keep full access: `admin`) and a last-used
// time; a revoked key's name can be reused (unique among active keys only).
// Download URLs are built when answering, so the ones the server used to
// store at publish time (`…/otafiles/<this row's sha256>`) are removed.
Migration {
    version: 2,
    sqlite: &[
        "CREATE TABLE api_keys_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            key_id TEXT NOT NULL UNIQUE,
            secret_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER,
            scopes TEXT NOT NULL DEFAULT 'admin',
            last_used_at INTEGER)",
        "INSERT INTO api_keys_v2 (id, name, key_id, secret_hash, created_at, revoked_at)
            SELECT id, name, key_id, secret_hash, created_at, revoked_at FROM api_keys",
        "DROP TABLE api_keys",
        "ALTER TABLE api_keys_v2 RENAME TO api_keys",
        "CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL",
        "UPDATE ota SET content = json_remove(content, '$.remote')
            WHERE json_extract(content, '$.remote') LIKE '%/otafiles/' || sha256",
    ],
    postgres: &[
        "ALTER TABLE api_keys DROP CONSTRAINT api_keys_name_key",
        "ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'admin'",
        "ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT",
        "CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL",
        "UPDATE ota SET content = (content::jsonb - 'remote')::text
            WHERE (content::jsonb ->> 'remote') LIKE '%/otafiles/' || sha256",
    ],
},
// Deltas between two versions of a package branch (skip-list packs, and any
// other source → target patch such as a ROM's incremental build), and the
// jobs that build them.
Migration {
    version: 3,
    sqlite: &[
        "CREATE TABLE deltas (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            package TEXT NOT NULL,
            branch TEXT NOT NULL,
            from_version TEXT NOT NULL,
            to_version TEXT NOT NULL,
            direction TEXT NOT NULL,
            format TEXT NOT NULL,
            level INTEGER,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            target_digest TEXT,
            signature TEXT,
            created_at INTEGER NOT NULL,
            UNIQUE (package, branch, from_version, to_version, format))",
        "CREATE INDEX deltas_sha256 ON deltas (sha256)",
        "CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            package TEXT NOT NULL,
            branch TEXT NOT NULL,
            from_version TEXT NOT NULL,
            to_version TEXT NOT NULL,
            level INTEGER,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            run_after INTEGER NOT NULL,
            claimed_by TEXT,
            claimed_at INTEGER,
            error TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            UNIQUE (kind, package, branch, from_version, to_version))",
        "CREATE INDEX jobs_ready ON jobs (state, run_after)",
    ],
    postgres: &[
        "CREATE TABLE deltas (
            id BIGSERIAL PRIMARY KEY,
            package TEXT NOT NULL,
            branch TEXT NOT NULL,
            from_version TEXT NOT NULL,
            to_version TEXT NOT NULL,
            direction TEXT NOT NULL,
            format TEXT NOT NULL,
            level INTEGER,
            sha256 TEXT NOT NULL,
            size BIGINT NOT NULL,
            target_digest TEXT,
            signature TEXT,
            created_at BIGINT NOT NULL,
            UNIQUE (package, branch, from_version, to_version, format))",
        "CREATE INDEX deltas_sha256 ON deltas (sha256)",
        "CREATE TABLE jobs (
            id BIGSERIAL PRIMARY KEY,
            kind TEXT NOT NULL,
            package TEXT NOT NULL,
            branch TEXT NOT NULL,
            from_version TEXT NOT NULL,
            to_version TEXT NOT NULL,
            level INTEGER,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            run_after BIGINT NOT NULL,
            claimed_by TEXT,
            claimed_at BIGINT,
            error TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            UNIQUE (kind, package, branch, from_version, to_version))",
        "CREATE INDEX jobs_ready ON jobs (state, run_after)",
    ],
},
// The update strategies: one validated document, shared by every server.
Migration {
    version: 4,
    sqlite: &[
        "CREATE TABLE strategies (
            id INTEGER PRIMARY KEY,
            body TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            updated_by TEXT NOT NULL)",
    ],
    postgres: &[
        "CREATE TABLE strategies (
            id BIGINT PRIMARY KEY,
            body TEXT NOT NULL,
            updated_at BIGINT NOT NULL,
            updated_by TEXT NOT NULL)",
    ],
},
// The delta map: each package branch's versions in the order they joined
// the skip-list (a position never changes; a deleted version stays as a
// waypoint), with each version's digest once a pack job computed it; and
// settings every server sharing the database must agree on (the public
// key packs are signed with).
Migration {
    version: 5,
    sqlite: &[
        "CREATE TABLE map_versions (
            package TEXT NOT NULL,
            branch TEXT NOT NULL,
            position INTEGER NOT NULL,
            version TEXT NOT NULL,
            digest TEXT,
            deleted INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (package, branch, position),
            UNIQUE (package, branch, version))",
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    postgres: &[
        "CREATE TABLE map_versions (
            package TEXT NOT NULL,
            branch TEXT NOT NULL,
            position BIGINT NOT NULL,
            version TEXT NOT NULL,
            digest TEXT,
            deleted INTEGER NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (package, branch, position),
            UNIQUE (package, branch, version))",
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
},
// The fleet: devices an agent runs on (token hashed as API keys are), what
// each reported last, and its recent reports.
Migration {
    version: 6,
    sqlite: &[
        "CREATE TABLE devices (
            name TEXT PRIMARY KEY,
            description TEXT NOT NULL DEFAULT '',
            token_id TEXT NOT NULL UNIQUE,
            token_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            last_seen INTEGER,
            last_result TEXT,
            last_error TEXT,
            installed TEXT NOT NULL DEFAULT '{}')",
        "CREATE TABLE device_reports (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            received_at INTEGER NOT NULL,
            result TEXT NOT NULL,
            report TEXT NOT NULL)",
        "CREATE INDEX device_reports_device ON device_reports (device, id)",
    ],
    postgres: &[
        "CREATE TABLE devices (
            name TEXT PRIMARY KEY,
            description TEXT NOT NULL DEFAULT '',
            token_id TEXT NOT NULL UNIQUE,
            token_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            last_seen BIGINT,
            last_result TEXT,
            last_error TEXT,
            installed TEXT NOT NULL DEFAULT '{}')",
        "CREATE TABLE device_reports (
            id BIGSERIAL PRIMARY KEY,
            device TEXT NOT NULL,
            received_at BIGINT NOT NULL,
            result TEXT NOT NULL,
            report TEXT NOT NULL)",
        "CREATE INDEX device_reports_device ON device_reports (device, id)",
    ],
},
// ROM builds for the CMUpdater and LineageOS Updater clients: devices,
// full builds (one row per device and ro.build.version.incremental), and
// what only those clients read about an incremental build (its file name
// and MD5) beside its row in `deltas` (package `rom:<codename>`), and the
// clients' reports.
Migration {
    version: 7,
    sqlite: &[
        "CREATE TABLE rom_devices (
            codename TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            oem TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL)",
        "CREATE TABLE rom_builds (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            channel TEXT NOT NULL,
            incremental TEXT NOT NULL,
            build_timestamp INTEGER NOT NULL,
            api_level INTEGER NOT NULL,
            version TEXT NOT NULL,
            romtype TEXT NOT NULL,
            filename TEXT NOT NULL,
            size INTEGER NOT NULL,
            md5 TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            changelog TEXT NOT NULL,
            published INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            UNIQUE (device, incremental),
            UNIQUE (device, filename))",
        "CREATE INDEX rom_builds_sha256 ON rom_builds (sha256)",
        "CREATE INDEX rom_builds_list ON rom_builds (device, channel, build_timestamp)",
        "CREATE TABLE rom_incrementals (
            delta_id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            filename TEXT NOT NULL,
            md5 TEXT NOT NULL,
            UNIQUE (device, filename))",
        "CREATE INDEX deltas_between ON deltas (from_version, to_version)",
        "CREATE TABLE rom_reports (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            fprint TEXT NOT NULL,
            fcontent TEXT NOT NULL,
            created_at INTEGER NOT NULL)",
    ],
    postgres: &[
        "CREATE TABLE rom_devices (
            codename TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            oem TEXT NOT NULL DEFAULT '',
            created_at BIGINT NOT NULL)",
        "CREATE TABLE rom_builds (
            id BIGSERIAL PRIMARY KEY,
            device TEXT NOT NULL,
            channel TEXT NOT NULL,
            incremental TEXT NOT NULL,
            build_timestamp BIGINT NOT NULL,
            api_level BIGINT NOT NULL,
            version TEXT NOT NULL,
            romtype TEXT NOT NULL,
            filename TEXT NOT NULL,
            size BIGINT NOT NULL,
            md5 TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            changelog TEXT NOT NULL,
            published INTEGER NOT NULL,
            created_at BIGINT NOT NULL,
            UNIQUE (device, incremental),
            UNIQUE (device, filename))",
        "CREATE INDEX rom_builds_sha256 ON rom_builds (sha256)",
        "CREATE INDEX rom_builds_list ON rom_builds (device, channel, build_timestamp)",
        "CREATE TABLE rom_incrementals (
            delta_id BIGINT PRIMARY KEY,
            device TEXT NOT NULL,
            filename TEXT NOT NULL,
            md5 TEXT NOT NULL,
            UNIQUE (device, filename))",
        "CREATE INDEX deltas_between ON deltas (from_version, to_version)",
        "CREATE TABLE rom_reports (
            id BIGSERIAL PRIMARY KEY,
            fprint TEXT NOT NULL,
            fcontent TEXT NOT NULL,
            created_at BIGINT NOT NULL)",
    ],
},
// Target-files of ROM builds uploaded for the server to build from: the
// build's full package and its incrementals from earlier builds are made
// by jobs, so a build uploaded once can be a source for later ones. On
// PostgreSQL, notifications of catalogue writes and ready jobs.
Migration {
    version: 8,
    sqlite: &[
        "CREATE TABLE rom_target_files (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            channel TEXT NOT NULL,
            incremental TEXT NOT NULL,
            build_timestamp INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            changelog TEXT NOT NULL,
            published INTEGER NOT NULL,
            sources INTEGER NOT NULL,
            uploaded_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            UNIQUE (device, incremental))",
        "CREATE INDEX rom_target_files_sha256 ON rom_target_files (sha256)",
    ],
    postgres: &[
        "CREATE TABLE rom_target_files (
            id BIGSERIAL PRIMARY KEY,
            device TEXT NOT NULL,
            channel TEXT NOT NULL,
            incremental TEXT NOT NULL,
            build_timestamp BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            size BIGINT NOT NULL,
            changelog TEXT NOT NULL,
            published INTEGER NOT NULL,
            sources BIGINT NOT NULL,
            uploaded_by TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            UNIQUE (device, incremental))",
        "CREATE INDEX rom_target_files_sha256 ON rom_target_files (sha256)",
        // Servers sharing the database LISTEN: a write to the catalogue, or
        // a job becoming ready, reaches every one of them at its commit.
        "CREATE OR REPLACE FUNCTION ota_notify_generation() RETURNS trigger AS $$
         BEGIN
             PERFORM pg_notify('ota_catalogue', NEW.generation::text);
             RETURN NEW;
         END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER catalogue_generation_notify AFTER UPDATE ON catalogue_generation
         FOR EACH ROW EXECUTE FUNCTION ota_notify_generation()",
        "CREATE OR REPLACE FUNCTION ota_notify_job() RETURNS trigger AS $$
         BEGIN
             PERFORM pg_notify('ota_jobs', NEW.kind);
             RETURN NEW;
         END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF state ON jobs
         FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION ota_notify_job()",
    ],
},
// The web admin: users (argon2id hashes, failed sign-ins and lock-out in
// Unix milliseconds), sessions by the SHA-256 of their cookie, and the
// audit log of every change made through the admin or the API.
Migration {
    version: 9,
    sqlite: &[
        "CREATE TABLE admin_users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            failed_count INTEGER NOT NULL DEFAULT 0,
            locked_until INTEGER)",
        "CREATE TABLE admin_sessions (
            id_hash TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL)",
        "CREATE INDEX admin_sessions_user ON admin_sessions (username)",
        "CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL)",
    ],
    postgres: &[
        "CREATE TABLE admin_users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            failed_count BIGINT NOT NULL DEFAULT 0,
            locked_until BIGINT)",
        "CREATE TABLE admin_sessions (
            id_hash TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL)",
        "CREATE INDEX admin_sessions_user ON admin_sessions (username)",
        "CREATE TABLE audit_log (
            id BIGSERIAL PRIMARY KEY,
            at BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL)",
    ],
},
// Downloads per day and kind (package files, ROM builds, bundles), added
// up by each server from its counters about once a minute.
Migration {
    version: 10,
    sqlite: &["CREATE TABLE download_counts (
            day INTEGER NOT NULL,
            kind TEXT NOT NULL,
            downloads INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            PRIMARY KEY (day, kind))"],
    postgres: &["CREATE TABLE download_counts (
            day BIGINT NOT NULL,
            kind TEXT NOT NULL,
            downloads BIGINT NOT NULL,
            bytes BIGINT NOT NULL,
            PRIMARY KEY (day, kind))"],
}];

/// Brings the schema up to date (or up to `upto`, for migration tests).
pub(crate) async fn run(
    conn: &mut AnyConnection,
    backend: Backend,
    upto: i64,
) -> Result<(), StoreError> {
    match backend {
        Backend::Sqlite => conn.execute("BEGIN IMMEDIATE").await,
        Backend::Postgres => conn.execute("BEGIN").await,
    }
    .map_err(|e| StoreError::db("starting migration", e))?;
    let result = apply(conn, backend, upto).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.execute(end).await;
    result?;
    ended.map_err(|e| StoreError::db("committing migration", e))?;
    Ok(())
}

async fn apply(conn: &mut AnyConnection, backend: Backend, upto: i64) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        conn.execute("SELECT pg_advisory_xact_lock(7306711110)")
            .await
            .map_err(|e| StoreError::db("locking for migration", e))?;
    }
    conn.execute(
        "CREATE TABLE IF NOT EXISTS ota_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(|e| StoreError::db("creating ota_schema", e))?;
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM ota_schema")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| StoreError::db("reading schema version", e))?;
    let current: i64 = row
        .try_get("v")
        .map_err(|e| StoreError::db("reading schema version", e))?;
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= upto)
    {
        let stmts = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        for stmt in stmts {
            conn.execute(*stmt)
                .await
                .map_err(|e| StoreError::db(format!("migration {}", m.version), e))?;
        }
        sqlx::query("INSERT INTO ota_schema (version, applied_at) VALUES ($1, $2)")
            .bind(m.version)
            .bind(crate::catalogue::now())
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::db("recording migration", e))?;
    }
    Ok(())
}
