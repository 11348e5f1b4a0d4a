//! The writer lock of a SQLite file shared by several processes
//! (docs/architecture.md, "The writer lock"): real `crebito serve`
//! processes, a real file, and the lock held by the test as another
//! process would hold it.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::fs::{flock, FlockOperation};
use serde_json::json;

use crebito::ledger::Ledger;

use crate::helpers::{self as support, Crebito};

/// Takes `<database>.writer-lock` as another instance's batch writer would
/// (an open file description of its own), until dropped.
fn hold_writer_lock(database: &Path) -> File {
    let mut path = database.as_os_str().to_owned();
    path.push(".writer-lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    flock(&file, FlockOperation::NonBlockingLockExclusive).expect("the writer lock is free");
    file
}

fn credit(description: &str) -> serde_json::Value {
    json!({"valor": 1, "tipo": "c", "descricao": description})
}

/// A posting waits while another process holds the writer lock (a
/// statement does not), and is applied once it is released: the release
/// comes first, the answer after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_posting_waits_for_another_writer_and_goes_right_after_it() {
    let (_dir, path, url) = support::temp_sqlite_file();
    let (_server, base) = Crebito::serve(&url, &["--acquire-timeout-ms", "10000"]).await;
    let lock = hold_writer_lock(&path);
    let events = Arc::new(Mutex::new(Vec::new()));
    let posting = tokio::spawn({
        let (base, events) = (base.clone(), events.clone());
        async move {
            let answer = support::post_new_connection(&base, 1, None, credit("espera")).await;
            events.lock().unwrap().push("answered");
            answer
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = reqwest::get(format!("{base}/clientes/1/extrato"))
        .await
        .unwrap();
    let (status, statement) = support::read(response).await;
    assert_eq!(status, 200, "a reader does not wait for the writer lock");
    assert_eq!(statement["saldo"]["total"], 0);
    assert!(
        !posting.is_finished(),
        "a posting went through while another writer held the lock"
    );
    events.lock().unwrap().push("released");
    drop(lock);
    let (status, body) = posting.await.unwrap();
    assert_eq!((status, &body["saldo"]), (200, &json!(1)), "{body}");
    assert_eq!(*events.lock().unwrap(), ["released", "answered"]);
}

/// A writer lock held past the acquire timeout: the posting is answered
/// 503 (counted as `busy`) within the timeout plus a margin, nothing is
/// applied, and the lock is not leaked by the wait that gave up: the next
/// posting after the release is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_lock_held_past_the_acquire_timeout_gives_503_and_is_not_leaked() {
    const ACQUIRE_MS: u64 = 400;
    let (_dir, path, url) = support::temp_sqlite_file();
    let acquire = ACQUIRE_MS.to_string();
    let (_server, base) = Crebito::serve(&url, &["--acquire-timeout-ms", &acquire]).await;
    let lock = hold_writer_lock(&path);
    let started = std::time::Instant::now();
    let (status, body) = support::post_new_connection(&base, 1, None, credit("bloqueada")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(ACQUIRE_MS + 2000),
        "answered after {:?}",
        started.elapsed()
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("crebito_unavailable_total{cause=\"busy\"} 1"),
        "{metrics}"
    );
    drop(lock);
    for attempt in ["depois 1", "depois 2"] {
        let (status, body) = support::post_new_connection(&base, 1, None, credit(attempt)).await;
        assert_eq!(status, 200, "{body}");
    }
    let ledger = support::open_ledger(&url).await;
    let descriptions: Vec<String> = ledger
        .postings()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.description)
        .collect();
    assert_eq!(descriptions, ["depois 1", "depois 2"]);
    // Nothing holds the lock any more.
    drop(hold_writer_lock(&path));
}

/// Two real processes on one file, their postings held back together by
/// another writer and then released at once: every posting is applied
/// exactly once, in turns, and the audit holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_take_turns_on_the_writer_lock() {
    const POSTINGS: i64 = 40;
    let (_dir, path, url) = support::temp_sqlite_file();
    let extra = ["--acquire-timeout-ms", "10000"];
    let ((_a, a), (_b, b)) =
        tokio::join!(Crebito::serve(&url, &extra), Crebito::serve(&url, &extra));
    let lock = hold_writer_lock(&path);
    let tasks: Vec<_> = (0..POSTINGS)
        .map(|i| {
            let base = if i % 2 == 0 { a.clone() } else { b.clone() };
            let body = json!({"valor": 10, "tipo": if i % 4 < 2 { "c" } else { "d" }, "descricao": format!("p{i}")});
            tokio::spawn(async move { support::post_new_connection(&base, 1 + i % 5, None, body).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a posting went through while another writer held the lock"
    );
    drop(lock);
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let ledger = support::open_ledger(&url).await;
    assert_eq!(ledger.postings().await.unwrap().len(), POSTINGS as usize);
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
}
