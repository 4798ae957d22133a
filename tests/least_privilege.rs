//! `sql/paywatch_reader.sql`, run exactly as shipped (through psql), gives
//! paywatch a role that can serve every push and can write nothing; its
//! optional invoice-creation grant can be given and taken back.

mod common;

use std::process::Output;

use common::{Client, TestDatabase, WAIT, test_config, txid};
use paywatch::config::Config;
use paywatch::database;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/paywatch_reader.sql");
const TOKEN: &str = "least-privilege-token";

/// A login role of this test's own (roles are cluster-wide), dropped with
/// every privilege it holds when the value is, also when the test panics.
struct Role {
    name: String,
    password: String,
    /// Admin options on the test database, where the role's grants live.
    admin: PgConnectOptions,
}

impl Role {
    fn new(db: &TestDatabase) -> Role {
        Role {
            name: format!("paywatch_reader_{}", Uuid::new_v4().simple()),
            password: Uuid::new_v4().simple().to_string(),
            admin: db.options.clone(),
        }
    }

    /// Connect options for the role on the test database.
    fn options(&self) -> PgConnectOptions {
        self.admin
            .clone()
            .username(&self.name)
            .password(&self.password)
    }

    /// What the DBA does after the script (`\password ROLE`); needed when the
    /// server asks for passwords, harmless when it trusts 127.0.0.1.
    async fn set_password(&self) {
        let mut admin = self.admin.connect().await.expect("admin connection");
        // ALTER ROLE takes no bind parameters; the password is 32 hex digits.
        sqlx::query(&format!(
            "alter role {} password '{}'",
            database::quote_identifier(&self.name),
            self.password
        ))
        .execute(&mut admin)
        .await
        .expect("set the role's password");
        admin.close().await.expect("close");
    }

    async fn exists(&self) -> bool {
        let mut admin = self.admin.connect().await.expect("admin connection");
        sqlx::query_scalar("select exists (select from pg_roles where rolname = $1)")
            .bind(&self.name)
            .fetch_one(&mut admin)
            .await
            .expect("look up the role")
    }

    async fn connect(&self) -> PgConnection {
        self.options().connect().await.expect("connect as the role")
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Same reason as TestDatabase's Drop: no blocking inside the test's
        // runtime, so clean up from a thread with a runtime of its own.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok(mut connection) = admin.connect().await else {
                    return;
                };
                let quoted = database::quote_identifier(&name);
                let exists: bool =
                    sqlx::query_scalar("select exists (select from pg_roles where rolname = $1)")
                        .bind(&name)
                        .fetch_one(&mut connection)
                        .await
                        .unwrap_or(false);
                if exists {
                    // Revokes the role's grants here and on the database
                    // itself, without which DROP ROLE refuses.
                    let _ = sqlx::query(&format!("drop owned by {quoted}"))
                        .execute(&mut connection)
                        .await;
                    let _ = sqlx::query(&format!("drop role if exists {quoted}"))
                        .execute(&mut connection)
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Runs the shipped file with psql as the test database's admin, the way the
/// README tells a DBA to. `extra` holds more `-v NAME=VALUE` settings.
async fn run_script(db: &TestDatabase, role: &str, extra: &[&str]) -> Output {
    let options = &db.options;
    let host = match options.get_socket() {
        Some(directory) => directory.display().to_string(),
        None => options.get_host().to_owned(),
    };
    let mut command = tokio::process::Command::new("psql");
    command
        .arg("-X")
        .args(["-v", "ON_ERROR_STOP=1"])
        .args(["-v", &format!("role={role}")])
        .args(["-v", &format!("dbname={}", db.name)]);
    for setting in extra {
        command.args(["-v", setting]);
    }
    command
        .args(["-h", &host])
        .args(["-p", &options.get_port().to_string()])
        .args(["-U", options.get_username()])
        .args(["-d", &db.name])
        .args(["-f", SCRIPT]);
    let url = url::Url::parse(&db.url).expect("test database URL");
    if let Some(password) = url.password() {
        // sqlx percent-encodes every byte of the password that is not
        // alphanumeric, so there is no literal '+' for form decoding to
        // mistake for a space: this is plain percent-decoding.
        let password = url::form_urlencoded::parse(format!("p={password}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        command.env("PGPASSWORD", password);
    }
    match command.output().await {
        Ok(output) => output,
        Err(error) => panic!("running psql (the PostgreSQL client must be installed): {error}"),
    }
}

fn assert_succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "psql -f sql/paywatch_reader.sql failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A paywatch started with `config`, as `paywatch serve` would run it.
struct Running {
    address: std::net::SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(config: Config) -> Running {
        let app = paywatch::App::build(config)
            .await
            .expect("paywatch starts as the role");
        let address = app.local_addr();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let server = tokio::spawn(app.run_until_stopped(async move { stopped.cancelled().await }));
        Running {
            address,
            stop,
            server,
        }
    }

    /// Opens the invoice's room and returns the client with its snapshot.
    async fn invoice_client(&self, invoice: Uuid) -> (Client, Value) {
        let url = format!("ws://{}/ws/jpp/invoice/{}/", self.address, invoice.simple());
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("upgrade within WAIT")
            .expect("upgrade accepted");
        let mut client = Client { socket };
        let snapshot = client.next_json().await;
        assert_eq!(snapshot["type"], "snapshot", "first frame is the snapshot");
        (client, snapshot)
    }

    async fn create_invoice(&self) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .post(format!("http://{}/api/invoices", self.address))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"amount_sats": 1_000}))
            .send()
            .await
            .expect("POST /api/invoices");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    async fn stop(self) {
        self.stop.cancel();
        self.server
            .await
            .expect("server task")
            .expect("server ran cleanly");
    }
}

/// paywatch's configuration for the test database, connecting as `role`.
fn config_as(db: &TestDatabase, role: &Role) -> Config {
    let mut config = test_config(db);
    config.database.database_url = Some(role.options().to_url_lossy().to_string());
    config.api_token = Some(TOKEN.to_owned());
    config
}

/// A pool on the test database as its owner (the admin that migrated it),
/// named so its sessions are not mistaken for paywatch's.
async fn owner_pool(db: &TestDatabase) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(db.options.clone().application_name("least_privilege_owner"))
        .await
        .expect("owner pool")
}

async fn create_invoice_as_owner(owner: &PgPool) -> Uuid {
    sqlx::query_scalar("insert into invoices (amount_sats) values (100000) returning id")
        .fetch_one(owner)
        .await
        .expect("insert invoice as the owner")
}

/// Runs `sql` as the role and checks PostgreSQL refuses it for lack of
/// privilege (SQLSTATE 42501), not for any other reason.
async fn assert_denied(connection: &mut PgConnection, sql: &str) {
    match sqlx::query(sql).execute(&mut *connection).await {
        Ok(done) => panic!(
            "`{sql}` was allowed ({} rows affected)",
            done.rows_affected()
        ),
        Err(sqlx::Error::Database(error)) => assert_eq!(
            error.code().as_deref(),
            Some("42501"),
            "`{sql}` failed, but not with permission denied: {error}"
        ),
        Err(other) => panic!("`{sql}` failed for another reason: {other}"),
    }
}

const A_PAYMENT: &str = "insert into payments (address, txid, amount_sats) values \
    ('bitcoincash:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2', repeat('ab', 32), 1)";

/// Every privilege the role holds on a table or sequence of schema public,
/// as `table:PRIVILEGE`, column-level grants included.
async fn privileges(connection: &mut PgConnection, role: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select c.relname || ':' || p
         from pg_class c
         cross join unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                 'REFERENCES', 'TRIGGER', 'USAGE']) p
         where c.relnamespace = 'public'::regnamespace
           and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
           and case
                 when c.relkind = 'S' then
                   p in ('SELECT', 'UPDATE', 'USAGE') and has_sequence_privilege($1, c.oid, p)
                 when p in ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES') then
                   has_any_column_privilege($1, c.oid, p)
                 else p <> 'USAGE' and has_table_privilege($1, c.oid, p)
               end
         order by 1",
    )
    .bind(role)
    .fetch_all(connection)
    .await
    .expect("list the role's privileges")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_role_serves_every_push_and_cannot_write() {
    let db = TestDatabase::create().await;
    let role = Role::new(&db);
    assert_succeeded(&run_script(&db, &role.name, &[]).await);
    role.set_password().await;
    let owner = owner_pool(&db).await;
    let invoice = create_invoice_as_owner(&owner).await;

    let app = Running::start(config_as(&db, &role)).await;

    // Every connection paywatch opened (query pool and LISTEN) is the role's.
    let sessions: Vec<(String, String)> = sqlx::query_as(
        "select application_name, usename::text from pg_stat_activity
         where datname = $1 and application_name in ($2, $3) order by 1",
    )
    .bind(&db.name)
    .bind(database::APPLICATION_NAME)
    .bind(database::LISTENER_APPLICATION_NAME)
    .fetch_all(&owner)
    .await
    .expect("pg_stat_activity");
    assert!(
        sessions
            .iter()
            .any(|(name, _)| name == database::LISTENER_APPLICATION_NAME)
            && sessions
                .iter()
                .any(|(name, _)| name == database::APPLICATION_NAME),
        "paywatch's sessions: {sessions:?}"
    );
    assert!(
        sessions.iter().all(|(_, user)| *user == role.name),
        "paywatch connected as someone else: {sessions:?}"
    );

    // The owner inserts a payment; the room's client gets it.
    let (mut client, snapshot) = app.invoice_client(invoice).await;
    assert_eq!(snapshot["invoice"]["paid_sats"], 0);
    let payment: i64 = sqlx::query_scalar(
        "insert into payments (invoice_id, txid, amount_sats) values ($1, $2, 100000) returning id",
    )
    .bind(invoice)
    .bind(txid())
    .fetch_one(&owner)
    .await
    .expect("insert payment as the owner");
    let event = client.next_event().await;
    assert_eq!(event["event_id"], payment);
    assert_eq!(event["invoice"]["status"], "paid");

    // Invoice creation over HTTP needs the optional grant: without it the
    // INSERT is refused and the client is told why.
    let (status, body) = app.create_invoice().await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "creation_not_permitted");

    // Connected as the role: reading works, writing and creating do not.
    let mut reader = role.connect().await;
    for table in ["invoices", "payments", "_sqlx_migrations"] {
        sqlx::query(&format!("select * from {table} limit 1"))
            .execute(&mut reader)
            .await
            .unwrap_or_else(|e| panic!("the role cannot read {table}: {e}"));
    }
    for sql in [
        A_PAYMENT,
        "insert into invoices (amount_sats) values (1)",
        "update payments set memo = 'changed'",
        "update invoices set amount_sats = 1",
        "delete from payments",
        "delete from invoices",
        "truncate payments",
        "delete from _sqlx_migrations",
        "select nextval('payments_id_seq')",
        "create table paywatch_probe (id int)",
        "create schema paywatch_probe",
    ] {
        assert_denied(&mut reader, sql).await;
    }
    assert_eq!(
        privileges(&mut reader, &role.name).await,
        [
            "_sqlx_migrations:SELECT",
            "invoices:SELECT",
            "payments:SELECT"
        ],
        "the role holds exactly SELECT on the three tables"
    );
    let total: i64 = sqlx::query_scalar("select count(*) from payments")
        .fetch_one(&owner)
        .await
        .expect("count payments");
    assert_eq!(total, 1, "nothing the role tried changed the table");

    reader.close().await.expect("close");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_creation_is_an_opt_in_that_a_rerun_takes_back() {
    let db = TestDatabase::create().await;
    let role = Role::new(&db);
    assert_succeeded(&run_script(&db, &role.name, &["create_invoices=on"]).await);
    role.set_password().await;
    let app = Running::start(config_as(&db, &role)).await;

    let (status, body) = app.create_invoice().await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let mut reader = role.connect().await;
    assert_eq!(
        privileges(&mut reader, &role.name).await,
        [
            "_sqlx_migrations:SELECT",
            "invoices:INSERT",
            "invoices:SELECT",
            "payments:SELECT"
        ]
    );
    for sql in [
        // Only the columns POST /api/invoices writes.
        "insert into invoices (id, amount_sats) values (gen_random_uuid(), 1)",
        "insert into invoices (amount_sats, created_at) values (1, now() - interval '1 day')",
        A_PAYMENT,
        "update invoices set amount_sats = 1",
        "delete from invoices",
    ] {
        assert_denied(&mut reader, sql).await;
    }

    // Running the script again without the option (the role exists now)
    // takes invoice creation back, also from paywatch's open connections.
    assert_succeeded(&run_script(&db, &role.name, &[]).await);
    let (status, body) = app.create_invoice().await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_denied(&mut reader, "insert into invoices (amount_sats) values (1)").await;
    assert_eq!(
        privileges(&mut reader, &role.name).await,
        [
            "_sqlx_migrations:SELECT",
            "invoices:SELECT",
            "payments:SELECT"
        ]
    );

    reader.close().await.expect("close");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_refuses_and_changes_nothing_when_the_role_could_still_write() {
    let db = TestDatabase::create().await;
    let role = Role::new(&db);
    let owner = owner_pool(&db).await;
    // A grant to PUBLIC reaches every role, this one included.
    sqlx::query("grant insert on payments to public")
        .execute(&owner)
        .await
        .expect("grant to PUBLIC");

    let output = run_script(&db, &role.name, &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the script accepted it: {stderr}");
    assert!(
        stderr.contains("can still write: INSERT on payments"),
        "{stderr}"
    );
    assert!(!role.exists().await, "the failed run left the role behind");

    // And when psql is connected to another database than `dbname` says.
    let output = run_script(&db, &role.name, &["dbname=postgres"]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("but psql is connected to database"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!role.exists().await);
}
