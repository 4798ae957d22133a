//! Zero-config start: when no server answers, paywatch runs PostgreSQL itself
//! under a folder of the project.

use paywatch::database::cluster::PrivateCluster;
use sqlx::{ConnectOptions, Connection};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_cluster_starts_serves_and_stops() {
    // Under the system temp folder: when the tests run as root, the cluster
    // runs as `postgres`, which must be able to reach the folder.
    let root = std::env::temp_dir().join(format!(
        "paywatch-cluster-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let cluster = PrivateCluster::new(&root, free_port());

    // Two callers at once: one initdb, one start, both succeed.
    let (first, second) = tokio::join!(cluster.ensure_running(), cluster.ensure_running());
    first.expect("cluster starts");
    second.expect("concurrent caller sees it running");

    let options: sqlx::postgres::PgConnectOptions = cluster.admin_url().parse().unwrap();
    let mut connection = options
        .connect()
        .await
        .expect("cluster accepts connections");
    let answer: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(answer, 1);
    connection.close().await.unwrap();

    cluster.stop().await.expect("cluster stops");
    assert!(
        options.connect().await.is_err(),
        "cluster still answers after stop"
    );
    let _ = std::fs::remove_dir_all(&root);
}
