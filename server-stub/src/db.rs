//! The database: opening it, its schema, and small helpers.
//!
//! All SQL goes through sqlx's `any` driver with `$N` placeholders, a dialect
//! SQLite and PostgreSQL both accept, so one set of queries serves both.
//! Integers (times in microseconds since the Unix epoch, flags as 0/1) are
//! `BIGINT`; JSON documents are `TEXT`.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// The pool every handler uses.
pub type Pool = AnyPool;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        updated_ts BIGINT NOT NULL,
        login_ts BIGINT)",
    "CREATE TABLE IF NOT EXISTS user_tokens (
        jti TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        name TEXT,
        created_ts BIGINT NOT NULL,
        exp BIGINT)",
    "CREATE INDEX IF NOT EXISTS user_tokens_user ON user_tokens (user_id)",
    // Personal access token names are unique per user (login sessions have
    // no name; NULLs never clash).
    "CREATE UNIQUE INDEX IF NOT EXISTS user_tokens_name ON user_tokens (user_id, name)",
    "CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY,
        identity TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        decommissioning BIGINT NOT NULL DEFAULT 0,
        created_ts BIGINT NOT NULL,
        updated_ts BIGINT NOT NULL,
        check_in_ts BIGINT,
        inventory TEXT NOT NULL DEFAULT '[]',
        inventory_ts BIGINT,
        group_name TEXT)",
    "CREATE TABLE IF NOT EXISTS auth_sets (
        id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        identity TEXT NOT NULL,
        pubkey TEXT NOT NULL,
        status TEXT NOT NULL,
        ts BIGINT NOT NULL,
        token_valid BIGINT NOT NULL DEFAULT 0,
        UNIQUE (device_id, pubkey))",
    "CREATE TABLE IF NOT EXISTS artifacts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        depends_key TEXT NOT NULL,
        info TEXT NOT NULL,
        size BIGINT NOT NULL,
        modified_ts BIGINT NOT NULL,
        UNIQUE (name, depends_key))",
    "CREATE TABLE IF NOT EXISTS deployments (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        artifact_name TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        finished_ts BIGINT,
        max_devices BIGINT NOT NULL,
        force_installation BIGINT NOT NULL,
        all_devices BIGINT NOT NULL,
        group_name TEXT)",
    "CREATE TABLE IF NOT EXISTS deployment_targets (
        deployment_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        PRIMARY KEY (deployment_id, device_id))",
    "CREATE INDEX IF NOT EXISTS deployment_targets_device ON deployment_targets (device_id)",
    // (`device_deployments` comes after the list: see `DEVICE_DEPLOYMENTS`.)
    // Identity and inventory attribute values, one row per value, for
    // filters (see `api::inventory`).
    "CREATE TABLE IF NOT EXISTS device_attributes (
        device_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        value_text TEXT NOT NULL,
        value_num DOUBLE PRECISION,
        PRIMARY KEY (device_id, scope, name, value_text))",
    "CREATE INDEX IF NOT EXISTS device_attributes_value ON device_attributes (scope, name, value_text)",
    "CREATE INDEX IF NOT EXISTS device_attributes_num ON device_attributes (scope, name, value_num)",
    // Notes and tags of releases (artifacts grouped by name) that have any.
    "CREATE TABLE IF NOT EXISTS releases (
        name TEXT PRIMARY KEY,
        notes TEXT NOT NULL,
        tags TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS devices_group ON devices (group_name)",
    "CREATE INDEX IF NOT EXISTS devices_status ON devices (status, id)",
];

/// One device's part in one deployment. `deleted_ts` is set when the
/// device's history is reset: such rows are kept for the record, and the
/// device may take the same deployment again (one live row per pair).
const DEVICE_DEPLOYMENTS: &str = "CREATE TABLE IF NOT EXISTS {name} (
        id TEXT PRIMARY KEY,
        deployment_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        status TEXT NOT NULL,
        substate TEXT,
        artifact_id TEXT,
        created_ts BIGINT NOT NULL,
        started_ts BIGINT,
        finished_ts BIGINT,
        log TEXT,
        deleted_ts BIGINT)";

const DEVICE_DEPLOYMENTS_COLUMNS: &str = "id, deployment_id, device_id, status, substate, \
    artifact_id, created_ts, started_ts, finished_ts, log";

/// `device_deployments`, created, or rebuilt from the first release's form
/// (which had `UNIQUE (deployment_id, device_id)` and no `deleted_ts`),
/// with its indexes.
async fn device_deployments(pool: &Pool) -> Result<(), sqlx::Error> {
    sqlx::query(&DEVICE_DEPLOYMENTS.replace("{name}", "device_deployments"))
        .execute(pool)
        .await?;
    let probe = "SELECT deleted_ts FROM device_deployments LIMIT 1";
    if sqlx::query(probe).fetch_optional(pool).await.is_err() {
        let mut tx = pool.begin().await?;
        for stmt in [
            DEVICE_DEPLOYMENTS.replace("{name}", "device_deployments_new"),
            format!(
                "INSERT INTO device_deployments_new ({DEVICE_DEPLOYMENTS_COLUMNS})
                 SELECT {DEVICE_DEPLOYMENTS_COLUMNS} FROM device_deployments"
            ),
            "DROP TABLE device_deployments".to_owned(),
            "ALTER TABLE device_deployments_new RENAME TO device_deployments".to_owned(),
        ] {
            sqlx::query(&stmt).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    for stmt in [
        "CREATE UNIQUE INDEX IF NOT EXISTS device_deployments_live
            ON device_deployments (deployment_id, device_id) WHERE deleted_ts IS NULL",
        "CREATE INDEX IF NOT EXISTS device_deployments_device ON device_deployments (device_id)",
        "CREATE INDEX IF NOT EXISTS device_deployments_deployment
            ON device_deployments (deployment_id, status)",
    ] {
        sqlx::query(stmt).execute(pool).await?;
    }
    Ok(())
}

/// Open (creating if needed) the database at `url` and bring its schema up
/// to date. A `sqlite:` URL's file is created when missing.
pub async fn open(url: &str) -> Result<Pool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    let url = if is_sqlite && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_owned()
    };
    let pool = AnyPoolOptions::new()
        .max_connections(if is_sqlite { 8 } else { 16 })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_sqlite {
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    if is_sqlite {
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
    }
    for stmt in SCHEMA {
        sqlx::query(stmt).execute(&pool).await?;
    }
    device_deployments(&pool).await?;
    for (table, column, decl) in COLUMNS {
        add_column(&pool, table, column, decl).await?;
    }
    Ok(pool)
}

/// Columns added after the first release: (table, column, declaration).
const COLUMNS: &[(&str, &str, &str)] = &[
    ("user_tokens", "last_used", "BIGINT"),
    // JSON array of {name, value, description?, timestamp}, and its ETag.
    ("devices", "tags", "TEXT"),
    ("devices", "tags_etag", "TEXT"),
];

/// Add a column unless it is there (another server process may add it at
/// the same moment: then the second `ALTER` fails and the column exists).
async fn add_column(pool: &Pool, table: &str, column: &str, decl: &str) -> Result<(), sqlx::Error> {
    let probe = format!("SELECT {column} FROM {table} LIMIT 1");
    if sqlx::query(&probe).fetch_optional(pool).await.is_ok() {
        return Ok(());
    }
    let alter = sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
        .execute(pool)
        .await;
    match alter {
        Ok(_) => Ok(()),
        Err(e) => match sqlx::query(&probe).fetch_optional(pool).await {
            Ok(_) => Ok(()),
            Err(_) => Err(e),
        },
    }
}

/// One value bound to a placeholder of a [`Sql`] statement.
#[derive(Debug, Clone)]
pub enum Arg {
    /// TEXT.
    Text(String),
    /// BIGINT.
    Int(i64),
    /// DOUBLE PRECISION.
    Float(f64),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Text(s.to_owned())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Text(s)
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Arg {
        Arg::Int(n)
    }
}

impl From<f64> for Arg {
    fn from(n: f64) -> Arg {
        Arg::Float(n)
    }
}

/// A statement built from pieces, its values numbered `$1, $2, ...` as
/// they are added (for filters whose number is known only at run time).
#[derive(Debug, Clone, Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// Start with `text`.
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }
    /// Append SQL text.
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }
    /// Append another piece, renumbering its placeholders after ours.
    pub fn extend(&mut self, other: &Sql) -> &mut Sql {
        let base = self.args.len();
        let mut text = String::with_capacity(other.text.len());
        let mut chars = other.text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                let mut n = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    n.push(d);
                    chars.next();
                }
                let n: usize = n.parse().unwrap_or(0);
                text.push_str(&format!("${}", n + base));
            } else {
                text.push(c);
            }
        }
        self.text.push_str(&text);
        self.args.extend(other.args.iter().cloned());
        self
    }
    /// Add a value; returns its placeholder.
    pub fn arg(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }
    /// Append ` <column> IN ($a, $b, ...)`; `values` must not be empty.
    pub fn push_in<V: Into<Arg>>(
        &mut self,
        column: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Sql {
        let marks: Vec<String> = values.into_iter().map(|v| self.arg(v)).collect();
        self.text
            .push_str(&format!(" {column} IN ({})", marks.join(", ")));
        self
    }
    /// The SQL text.
    pub fn text(&self) -> &str {
        &self.text
    }
    /// The query with its values bound.
    pub fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(n) => q.bind(*n),
                Arg::Float(f) => q.bind(*f),
            };
        }
        q
    }
}

/// `s` as a `LIKE` pattern matching it anywhere, with `\` as the escape
/// character (use `LIKE $n ESCAPE '\'`).
pub fn like_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// True for a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// The default database URL for a data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("updraft.db").display())
}

/// A setting, or `None`.
pub async fn setting(pool: &Pool, name: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    row.map(|r| r.try_get::<String, _>(0)).transpose()
}

/// Store `value` under `name` unless a value is already there; returns the
/// value in force (so several servers starting at once agree on one).
pub async fn setting_or_insert(
    pool: &Pool,
    name: &str,
    value: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(value)
        .execute(pool)
        .await?;
    Ok(setting(pool, name)
        .await?
        .unwrap_or_else(|| value.to_owned()))
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// RFC 3339 UTC with microseconds, e.g. `2024-05-02T09:14:03.512000Z`.
pub fn rfc3339(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A fresh random UUIDv4 string.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// True when `s` is a UUID.
pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::from_str(s).is_ok()
}

/// Column helpers that turn a type mismatch into a `sqlx::Error`.
pub trait RowExt {
    /// A text column.
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    /// A BIGINT column.
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    /// A nullable BIGINT column.
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    /// A JSON text column, parsed.
    fn json(&self, col: &str) -> Result<serde_json::Value, sqlx::Error>;
}

impl RowExt for AnyRow {
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(col)
    }
    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(col)
    }
    fn json(&self, col: &str) -> Result<serde_json::Value, sqlx::Error> {
        let s: String = self.try_get(col)?;
        serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn older_databases_get_the_new_columns() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let url = sqlite_url(dir.path());
        {
            sqlx::any::install_default_drivers();
            let pool = AnyPoolOptions::new()
                .connect(&format!("{url}?mode=rwc"))
                .await?;
            // The first release's tables, with a token and a device in them.
            for stmt in [
                "CREATE TABLE user_tokens (jti TEXT PRIMARY KEY, user_id TEXT NOT NULL,
                    name TEXT, created_ts BIGINT NOT NULL, exp BIGINT)",
                "CREATE TABLE device_deployments (id TEXT PRIMARY KEY,
                    deployment_id TEXT NOT NULL, device_id TEXT NOT NULL, status TEXT NOT NULL,
                    substate TEXT, artifact_id TEXT, created_ts BIGINT NOT NULL,
                    started_ts BIGINT, finished_ts BIGINT, log TEXT,
                    UNIQUE (deployment_id, device_id))",
                "INSERT INTO device_deployments (id, deployment_id, device_id, status, created_ts,
                    finished_ts) VALUES ('dd', 'dep', 'd', 'success', 1, 2)",
                "CREATE TABLE devices (id TEXT PRIMARY KEY, identity TEXT NOT NULL UNIQUE,
                    status TEXT NOT NULL, decommissioning BIGINT NOT NULL DEFAULT 0,
                    created_ts BIGINT NOT NULL, updated_ts BIGINT NOT NULL, check_in_ts BIGINT,
                    inventory TEXT NOT NULL DEFAULT '[]', inventory_ts BIGINT, group_name TEXT)",
            ] {
                sqlx::query(stmt).execute(&pool).await?;
            }
            sqlx::query("INSERT INTO user_tokens (jti, user_id, created_ts) VALUES ('j', 'u', 1)")
                .execute(&pool)
                .await?;
            sqlx::query(
                "INSERT INTO devices (id, identity, status, created_ts, updated_ts)
                 VALUES ('d', '{}', 'pending', 1, 1)",
            )
            .execute(&pool)
            .await?;
            pool.close().await;
        }
        for _ in 0..2 {
            let pool = open(&url).await?;
            let r = sqlx::query("SELECT jti, last_used FROM user_tokens")
                .fetch_one(&pool)
                .await?;
            assert_eq!(r.text("jti")?, "j");
            assert_eq!(r.opt_int("last_used")?, None);
            let r = sqlx::query("SELECT tags, tags_etag FROM devices")
                .fetch_one(&pool)
                .await?;
            assert_eq!(r.opt_text("tags")?, None);
            let r = sqlx::query("SELECT status, deleted_ts FROM device_deployments")
                .fetch_one(&pool)
                .await?;
            assert_eq!(r.text("status")?, "success");
            assert_eq!(r.opt_int("deleted_ts")?, None);
            // One live row per (deployment, device); deleted ones besides.
            let add = "INSERT INTO device_deployments (id, deployment_id, device_id, status,
                created_ts) VALUES ($1, 'dep', 'd', 'pending', 3)";
            assert!(sqlx::query(add).bind("x").execute(&pool).await.is_err());
            sqlx::query("UPDATE device_deployments SET deleted_ts = 5")
                .execute(&pool)
                .await?;
            sqlx::query(add).bind("y").execute(&pool).await?;
            sqlx::query("DELETE FROM device_deployments WHERE id = 'y'")
                .execute(&pool)
                .await?;
            sqlx::query("UPDATE device_deployments SET deleted_ts = NULL")
                .execute(&pool)
                .await?;
            pool.close().await;
        }
        Ok(())
    }

    #[test]
    fn sql_pieces_renumber_their_placeholders() {
        let mut a = Sql::new("SELECT 1 WHERE x = ");
        let p = a.arg(1);
        a.push(&p);
        let mut b = Sql::new(" AND y = $1 AND z IN (");
        b.arg("y");
        b.push("$2, $3)");
        b.arg(2);
        b.arg(3);
        a.extend(&b);
        assert_eq!(
            a.text(),
            "SELECT 1 WHERE x = $1 AND y = $2 AND z IN ($3, $4)"
        );
        assert_eq!(a.args.len(), 4);
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500_000), "1970-01-01T00:00:01.5Z");
    }
}
