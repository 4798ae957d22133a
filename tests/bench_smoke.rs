//! The benchmark tool's smoke run, so it cannot rot: a few seconds, small
//! numbers, no timing assertions; it must account for every frame.

mod common;

use common::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_run_accounts_for_every_frame() {
    let app = TestApp::spawn().await;
    let json = std::env::temp_dir().join(format!("paywatch-bench-{}.json", uuid::Uuid::new_v4()));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywatch-bench"))
        .args(["--scenario", "smoke", "--ceiling-seconds", "0.5", "--url"])
        .arg(app.ws_url(""))
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg("--json")
        .arg(&json)
        .env("DATABASE_URL", &app.database.url)
        .env("RUST_BACKTRACE", "0")
        .output()
        .await
        .expect("paywatch-bench runs");
    assert!(
        output.status.success(),
        "bench failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert!(result["frames_expected"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(
        result["frames_received"], result["frames_expected"],
        "{result}"
    );
    assert_eq!(result["duplicates"], 0);
    assert_eq!(result["cross_room_leaks"], 0);
    assert!(
        result["ceiling"]["inserts_per_s_with_notify_trigger"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}
