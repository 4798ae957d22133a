//! Finding the database, connecting to it, and applying migrations.
//!
//! With `DATABASE_URL` set, paywatch uses exactly that. Without it, it uses
//! postgres://postgres@127.0.0.1:5432/paywatch, creating the database if it is
//! missing; if no server answers there, it starts a private cluster under
//! `PAYWATCH_DATA_DIR` ([`cluster`]) and uses that instead.

pub mod cluster;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config::DatabaseConfig;
use cluster::{ClusterError, PrivateCluster};

/// The migrations in `migrations/`, built into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Database used when `DATABASE_URL` is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/paywatch";

/// `application_name` of the query pool's connections.
pub const APPLICATION_NAME: &str = "paywatch";
/// `application_name` of the LISTEN connection.
pub const LISTENER_APPLICATION_NAME: &str = "paywatch-listener";

/// Why the database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// `DATABASE_URL` does not parse.
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(sqlx::Error),
    /// Connecting or querying failed.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The private cluster could not be started.
    #[error(
        "no PostgreSQL server answers at {DEFAULT_URL} and a private cluster could not be started: {0}"
    )]
    Cluster(#[from] ClusterError),
    /// The schema is older than this binary.
    #[error(
        "the database schema is not up to date (applied: {applied:?}, this binary needs {needed}); run `paywatch migrate` first"
    )]
    SchemaBehind {
        /// Newest applied migration version, if any.
        applied: Option<i64>,
        /// Newest migration version this binary knows.
        needed: i64,
    },
}

/// Where the database is, once found.
#[derive(Debug, Clone)]
pub struct Located {
    /// Options to connect to the service's database.
    pub options: PgConnectOptions,
    /// True when `DATABASE_URL` was unset: paywatch owns set-up, so it
    /// creates the database and applies migrations itself.
    pub zero_config: bool,
}

/// Finds the server (see the module docs), making sure in zero-config mode
/// that it runs and that the `paywatch` database exists. Does not migrate.
pub async fn locate(config: &DatabaseConfig) -> Result<Located, DatabaseError> {
    if let Some(url) = &config.database_url {
        let options = PgConnectOptions::from_str(url).map_err(DatabaseError::BadUrl)?;
        return Ok(Located {
            options,
            zero_config: false,
        });
    }
    let server = locate_server(None, config).await?;
    create_database_if_missing(&server, "paywatch").await?;
    Ok(Located {
        options: server.database("paywatch"),
        zero_config: true,
    })
}

/// Options for the maintenance database of the server to use: the server of
/// `url` if given, else the default server, else the private cluster (started
/// if needed). Tests use this to find a server to create their databases on.
pub async fn locate_server(
    url: Option<&str>,
    config: &DatabaseConfig,
) -> Result<PgConnectOptions, DatabaseError> {
    if let Some(url) = url {
        return PgConnectOptions::from_str(url).map_err(DatabaseError::BadUrl);
    }
    let default = PgConnectOptions::from_str(DEFAULT_URL)
        .map_err(DatabaseError::BadUrl)?
        .database("postgres");
    match tokio::time::timeout(Duration::from_secs(3), default.connect()).await {
        Ok(Ok(connection)) => {
            connection.close().await?;
            return Ok(default);
        }
        // Any answer other than "nobody is there" (a refused login, say) is
        // the user's to fix; a private cluster would only hide it.
        Ok(Err(sqlx::Error::Io(error))) => {
            tracing::info!(%error, "no PostgreSQL server answers at 127.0.0.1:5432");
        }
        Ok(Err(error)) => return Err(error.into()),
        Err(_) => tracing::info!("PostgreSQL at 127.0.0.1:5432 did not answer within 3 s"),
    }
    let cluster = PrivateCluster::new(&config.data_dir, config.private_pg_port);
    cluster.ensure_running().await?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        port = config.private_pg_port,
        "using the private PostgreSQL cluster"
    );
    PgConnectOptions::from_str(&cluster.admin_url()).map_err(DatabaseError::BadUrl)
}

/// Creates database `name` on the server of `server` unless it exists.
pub async fn create_database_if_missing(
    server: &PgConnectOptions,
    name: &str,
) -> Result<(), DatabaseError> {
    let mut connection = server.connect().await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut connection)
            .await?;
    if !exists {
        // CREATE DATABASE takes no bind parameters; the name is quoted as an
        // identifier and is never client input.
        let created = sqlx::query(&format!("create database {}", quote_identifier(name)))
            .execute(&mut connection)
            .await;
        match created {
            Ok(_) => tracing::info!(database = name, "created database"),
            // Another process created it first.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    connection.close().await?;
    Ok(())
}

/// Quotes an SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects the query pool.
pub async fn connect(
    options: &PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, DatabaseError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(query_options(options))
        .await?)
}

/// The query pool's session settings. JIT compilation is off: the reload
/// query's estimated cost (a page of rows, each with its invoice's total)
/// passes `jit_above_cost` once an invoice has a few hundred payments, and
/// PostgreSQL then compiles the plan again on every execution, about 17 ms
/// each on the benchmark machine, for a query that runs in under 2 ms.
fn query_options(options: &PgConnectOptions) -> PgConnectOptions {
    options
        .clone()
        .application_name(APPLICATION_NAME)
        .options([("jit", "off")])
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), DatabaseError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Fails unless every migration this binary knows has been applied.
pub async fn check_schema(pool: &PgPool) -> Result<(), DatabaseError> {
    let needed = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let table_exists: bool =
        sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
            .fetch_one(pool)
            .await?;
    let applied: Option<i64> = if table_exists {
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(pool)
            .await?
    } else {
        None
    };
    if applied.is_some_and(|v| v >= needed) {
        Ok(())
    } else {
        Err(DatabaseError::SchemaBehind { applied, needed })
    }
}

/// The URL without its password, for logs.
pub fn redacted(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}
