//! The `paywatch` command as an operator uses it: migrate, create an invoice,
//! watch its room, pay it, and see the push.

mod common;

use std::process::Stdio;

use common::{TestApp, TestDatabase, WAIT, test_config};
use paywatch::database;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn paywatch(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paywatch"));
    command
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

async fn output(command: &mut Command) -> String {
    let output = command.output().await.expect("paywatch runs");
    assert!(
        output.status.success(),
        "paywatch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_create_watch_and_pay_show_the_push() {
    let app = TestApp::spawn().await;
    let url = &app.database.url;
    let invoice = output(paywatch(url).args(["invoice", "create", "--amount", "1000"])).await;
    let invoice: uuid::Uuid = invoice.parse().expect("invoice create prints the id");

    let mut watch = paywatch(url)
        .args(["watch", &invoice.simple().to_string(), "--json", "--url"])
        .arg(app.ws_url(""))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut next_frame = async || -> Value {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("watch prints within the wait")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&line).expect("one JSON document per line")
    };
    let snapshot = next_frame().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["invoice"]["status"], "unpaid");

    let payment = output(paywatch(url).args([
        "pay",
        "--invoice",
        &invoice.to_string(),
        "--amount",
        "1000",
        "--memo",
        "cli",
    ]))
    .await;
    let event = next_frame().await;
    assert_eq!(event["type"], "payment_received");
    assert_eq!(event["event_id"].to_string(), payment);
    assert_eq!(event["memo"], "cli");
    assert_eq!(event["invoice"]["status"], "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_repeatable_and_serve_refuses_an_unmigrated_database() {
    let template = TestDatabase::create().await;
    // A second, empty database on the same server.
    let name = format!("{}_empty", template.name);
    database::create_database_if_missing(&template.server, &name)
        .await
        .unwrap();
    let empty_url = template
        .url
        .replace(&format!("/{}", template.name), &format!("/{name}"));

    let mut config = test_config(&template);
    config.database.database_url = Some(empty_url.clone());
    let refused = paywatch::App::build(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("paywatch migrate"),
        "{refused}"
    );

    assert_eq!(
        output(paywatch(&empty_url).arg("migrate")).await,
        "migrations applied"
    );
    assert_eq!(
        output(paywatch(&empty_url).arg("migrate")).await,
        "migrations applied"
    );
    let app = paywatch::App::build(config)
        .await
        .expect("serves once migrated");
    drop(app);

    use sqlx::ConnectOptions;
    let mut admin = template.server.connect().await.unwrap();
    sqlx::query(&format!("drop database \"{name}\" with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_logs_the_database_password() {
    let database = TestDatabase::create().await;
    let with_password = database.url.replacen("postgres@", "postgres:s3cret-pw@", 1);
    assert!(with_password.contains("s3cret-pw"), "{with_password}");
    let mut serve = paywatch(&with_password)
        .arg("serve")
        .env("PAYWATCH_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let mut log = String::new();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            if line.contains("serving") {
                break;
            }
        }
    })
    .await
    .expect("serve starts");
    serve.kill().await.unwrap();
    assert!(log.contains("serving"), "{log}");
    assert!(!log.contains("s3cret-pw"), "password in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_rpc_prints_the_room_frames_and_people_get_escaped_lines() {
    let app = TestApp::spawn().await;
    let url = &app.database.url;
    let shop = common::address(50);
    let watch = |extra: &[&str]| {
        let mut command = paywatch(url);
        command
            .args(["watch", "--address", &shop, "--url"])
            .arg(app.ws_url(""))
            .args(extra);
        command
    };
    let mut rpc = watch(&["--rpc", "--json"]);
    let mut room = watch(&["--json"]);
    let mut human = watch(&[]);
    let mut rpc = rpc.stdout(Stdio::piped()).spawn().unwrap();
    let mut room = room.stdout(Stdio::piped()).spawn().unwrap();
    let mut human = human.stdout(Stdio::piped()).spawn().unwrap();
    let mut readers: Vec<_> = [&mut rpc, &mut room, &mut human]
        .into_iter()
        .map(|child| BufReader::new(child.stdout.take().unwrap()).lines())
        .collect();
    let mut next = async |n: usize| {
        tokio::time::timeout(WAIT, readers[n].next_line())
            .await
            .expect("a line within the wait")
            .unwrap()
            .expect("a line")
    };
    for n in 0..3 {
        assert!(next(n).await.contains("snapshot"));
    }
    let id = output(paywatch(url).args([
        "pay",
        "--address",
        &shop,
        "--amount",
        "7",
        "--memo",
        "\u{1b}[31mred",
    ]))
    .await;
    let over_rpc: Value = serde_json::from_str(&next(0).await).unwrap();
    let over_room: Value = serde_json::from_str(&next(1).await).unwrap();
    assert_eq!(over_rpc, over_room, "--rpc prints the same event objects");
    assert_eq!(over_rpc["event_id"].to_string(), id);
    let line = next(2).await;
    assert!(line.contains(&format!("#{id} 7 sats")), "{line}");
    assert!(line.contains("\\u{1b}[31mred"), "memo escaped: {line}");
    assert!(
        !line.contains('\u{1b}'),
        "no raw escape sequence reaches the terminal"
    );
}
