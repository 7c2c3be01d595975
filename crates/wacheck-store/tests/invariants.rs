//! The store's promises about repeated and concurrent work, against a real Postgres: storing a
//! chunk's answers twice, finishing a chunk twice, leases between workers, and the task's
//! counters once every chunk is answered.
//!
//! Every test gets a fresh database `wacheck_test_<ulid>` on `WACHECK_TEST_DATABASE_URL`
//! (dropped at the end of a passing test; `scripts/drop-test-databases` removes those of
//! failed or interrupted runs). Expected values are written out by hand from the literal
//! tasks and answers below, never computed with the store's own functions.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use tokio::sync::mpsc;
use wacheck_core::{
    AccountKind, AccountState, E164, Outcome, ResultFormat, TaskId, TaskKind, TaskStatus, WhatsApp,
};
use wacheck_store::accounts::{self, Limits, NewAccount, Spent, TaskUsage};
use wacheck_store::cache::{self, Lookup};
use wacheck_store::chunks::{self, Claim, Pushes, Usage};
use wacheck_store::tasks::{
    self, Batch, Block, ChunkRow, IngestSummary, NewTask, Quota, ResultColumns,
};
use wacheck_store::{PgPool, StoreError, lifecycle, users};

// ---------------------------------------------------------------------------------------------
// A fresh database per test.

struct TestDb {
    pool: PgPool,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `wacheck_test_<ulid>` and runs the crate's migrations on it (`wacheck_store::open`
    /// applies `MIGRATOR`).
    async fn new() -> TestDb {
        let admin_url = std::env::var("WACHECK_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".into());
        // The prefix scripts/drop-test-databases looks for.
        let name = format!(
            "wacheck_test_{}",
            ulid::Ulid::generate().to_string().to_ascii_lowercase()
        );
        let admin = sqlx::PgPool::connect(&format!("{admin_url}/postgres"))
            .await
            .expect("postgres is running (WACHECK_TEST_DATABASE_URL)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let pool = wacheck_store::open(&format!("{admin_url}/{name}"), 8)
            .await
            .expect("migrations run");
        TestDb {
            pool,
            name,
            admin_url,
        }
    }

    /// Drops the database (a failed test leaves it for scripts/drop-test-databases).
    async fn drop_database(self) {
        self.pool.close().await;
        if let Ok(admin) = sqlx::PgPool::connect(&format!("{}/postgres", self.admin_url)).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// Polls `f` every 50 ms until it gives a value; fails the test after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Literal tasks.

const USER: &str = "alice";
/// An account of the shared pool: its definite answers feed the result cache.
const SHARED: &str = "shared-1";

const N1: &str = "+41790000001";
const N2: &str = "+41790000002";
const N3: &str = "+41790000003";
const N4: &str = "+41790000004";
const N5: &str = "+41790000005";
const J1: &str = "41790000001@s.whatsapp.net";
const J4: &str = "41790000004@s.whatsapp.net";

const N11: &str = "+41790000011";
const N12: &str = "+41790000012";
const N13: &str = "+41790000013";

fn e164(s: &str) -> E164 {
    E164::from_canonical(s).expect("a canonical number")
}

fn strs(numbers: &[E164]) -> Vec<&str> {
    numbers.iter().map(E164::as_str).collect()
}

async fn create_task(
    pool: &PgPool,
    chunk_size: u32,
    block: Block,
    chunk_rows: Vec<ChunkRow>,
    summary: IngestSummary,
) -> TaskId {
    users::create(pool, USER).await.unwrap();
    let new = NewTask {
        id: TaskId::new(),
        user_id: USER.into(),
        kind: TaskKind::Simple,
        result_format: ResultFormat::Csv,
        default_region: None,
        chunk_size,
        use_cache: true,
        input_name: None,
        input_key: None,
        result_columns: ResultColumns::Full,
    };
    let (tx, rx) = mpsc::channel(4);
    tx.send(Batch::Blocks(vec![block])).await.unwrap();
    tx.send(Batch::Chunks(chunk_rows)).await.unwrap();
    drop(tx);
    let record = tasks::insert(
        pool,
        &new,
        Quota::default(),
        rx,
        std::future::ready(Ok::<_, std::convert::Infallible>(summary)),
    )
    .await
    .expect("task stored");
    record.id
}

/// Seven input rows, chunk size 2:
///
/// | row | input        | number | rows of it | chunk |
/// |-----|--------------|--------|------------|-------|
/// | 0   | +41790000001 | N1     | 2          | 0     |
/// | 1   | not a number | —      | (invalid)  | —     |
/// | 2   | +41790000002 | N2     | 1          | 0     |
/// | 3   | +41790000001 | N1     |            |       |
/// | 4   | +41790000003 | N3     | 1          | 1     |
/// | 5   | +41790000004 | N4     | 1          | 1     |
/// | 6   | +41790000005 | N5     | 1          | 2     |
async fn mixed_task(pool: &PgPool) -> TaskId {
    create_task(
        pool,
        2,
        Block {
            block_no: 0,
            numbers: "{41790000001,NULL,41790000002,41790000001,41790000003,41790000004,\
                      41790000005}"
                .into(),
            raw: Some(r#"{NULL,"not a number",NULL,NULL,NULL,NULL,NULL}"#.into()),
        },
        vec![
            ChunkRow {
                chunk_no: 0,
                numbers: "{41790000001,41790000002}".into(),
                rows: "{2,1}".into(),
            },
            ChunkRow {
                chunk_no: 1,
                numbers: "{41790000003,41790000004}".into(),
                rows: "{1,1}".into(),
            },
            ChunkRow {
                chunk_no: 2,
                numbers: "{41790000005}".into(),
                rows: "{1}".into(),
            },
        ],
        IngestSummary {
            total: 7,
            invalid: 1,
            distinct: 5,
            chunks: 3,
            invalid_national: 0,
        },
    )
    .await
}

/// Three distinct numbers, one row each, in a single chunk.
async fn three_number_task(pool: &PgPool) -> TaskId {
    create_task(
        pool,
        3,
        Block {
            block_no: 0,
            numbers: "{41790000011,41790000012,41790000013}".into(),
            raw: None,
        },
        vec![ChunkRow {
            chunk_no: 0,
            numbers: "{41790000011,41790000012,41790000013}".into(),
            rows: "{1,1,1}".into(),
        }],
        IngestSummary {
            total: 3,
            invalid: 0,
            distinct: 3,
            chunks: 1,
            invalid_national: 0,
        },
    )
    .await
}

async fn shared_account(pool: &PgPool) {
    accounts::create(
        pool,
        &NewAccount {
            id: SHARED.into(),
            kind: AccountKind::Simulated,
            owner: None,
            settings: serde_json::json!({}),
            limits: Limits::default(),
            state: AccountState::Connected,
            builtin: false,
        },
    )
    .await
    .unwrap()
    .expect("a new account");
}

fn yes(jid: &str) -> Outcome {
    Outcome {
        whatsapp: Some(WhatsApp::Yes),
        jid: Some(jid.into()),
        account: Some(SHARED.into()),
        ..Default::default()
    }
}

fn no() -> Outcome {
    Outcome {
        whatsapp: Some(WhatsApp::No),
        account: Some(SHARED.into()),
        ..Default::default()
    }
}

/// One `store_outcomes` call: the answers, and what the account spent on them.
type StoreCall = (Vec<(E164, Outcome)>, Option<Spent>);

/// What a worker stores for each chunk of [`mixed_task`], call by call:
/// chunk 0: N1 yes, N2 no (2 checks in 1 call);
/// chunk 1: N4 yes from the cache (free), then N3 unknown (1 check in 1 call);
/// chunk 2: N5 invalid on WhatsApp, stored as unknown (1 check in 1 call).
fn mixed_answers(chunk: i32) -> Vec<StoreCall> {
    let spent = |checks| Spent {
        checks,
        details: 0,
        calls: 1,
    };
    match chunk {
        0 => vec![(vec![(e164(N1), yes(J1)), (e164(N2), no())], Some(spent(2)))],
        1 => vec![
            (
                vec![(
                    e164(N4),
                    Outcome {
                        cached: true,
                        ..yes(J4)
                    },
                )],
                None,
            ),
            (
                vec![(
                    e164(N3),
                    Outcome {
                        whatsapp: Some(WhatsApp::Unknown),
                        reason: Some("backend timed out".into()),
                        account: Some(SHARED.into()),
                        ..Default::default()
                    },
                )],
                Some(spent(1)),
            ),
        ],
        2 => vec![(
            vec![(
                e164(N5),
                Outcome {
                    whatsapp: Some(WhatsApp::Invalid),
                    account: Some(SHARED.into()),
                    ..Default::default()
                },
            )],
            Some(spent(1)),
        )],
        _ => unreachable!("the task has 3 chunks"),
    }
}

/// Makes the calls of `mixed_answers(chunk)`; returns how many numbers got an answer.
async fn store_mixed(pool: &PgPool, task: TaskId, chunk: i32) -> u64 {
    let mut stored = 0;
    for (rows, spent) in mixed_answers(chunk) {
        let usage = spent.as_ref().map(|spent| Usage {
            account: SHARED,
            spent,
        });
        stored += chunks::store_outcomes(pool, task, chunk, &rows, usage)
            .await
            .unwrap();
    }
    stored
}

// ---------------------------------------------------------------------------------------------
// What a task looks like from outside, by the store's public reads.

#[derive(Debug, PartialEq, Eq)]
struct Counters {
    status: TaskStatus,
    total: i64,
    invalid: i64,
    success: i64,
    failure: i64,
    unknown: i64,
    cached: i64,
    simulated: bool,
    chunk_count: i32,
    chunks_done: i32,
}

async fn counters(pool: &PgPool, task: TaskId) -> Counters {
    let t = tasks::get(pool, task).await.unwrap().expect("task exists");
    Counters {
        status: t.status,
        total: t.total,
        invalid: t.invalid,
        success: t.success,
        failure: t.failure,
        unknown: t.unknown,
        cached: t.cached,
        simulated: t.simulated,
        chunk_count: t.chunk_count,
        chunks_done: t.chunks_done,
    }
}

/// One input row with its answer, as the result file gets it.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    e164: Option<String>,
    raw: Option<String>,
    outcome: Option<String>,
    jid: Option<String>,
    reason: Option<String>,
    cached: bool,
}

fn answered(number: &str, outcome: &str) -> Row {
    Row {
        e164: Some(number.into()),
        raw: None,
        outcome: Some(outcome.into()),
        jid: None,
        reason: None,
        cached: false,
    }
}

fn with_jid(row: Row, jid: &str) -> Row {
    Row {
        jid: Some(jid.into()),
        ..row
    }
}

fn with_reason(row: Row, reason: &str) -> Row {
    Row {
        reason: Some(reason.into()),
        ..row
    }
}

fn unanswered(number: &str) -> Row {
    Row {
        e164: Some(number.into()),
        raw: None,
        outcome: None,
        jid: None,
        reason: None,
        cached: false,
    }
}

fn invalid(raw: &str) -> Row {
    Row {
        e164: None,
        raw: Some(raw.into()),
        outcome: None,
        jid: None,
        reason: None,
        cached: false,
    }
}

async fn rows(pool: &PgPool, task: TaskId) -> Vec<Row> {
    let batches: Vec<Vec<chunks::ResultRow>> =
        chunks::result_rows(pool, task).try_collect().await.unwrap();
    batches
        .into_iter()
        .flatten()
        .map(|r| Row {
            e164: r.e164,
            raw: r.raw,
            outcome: r.outcome,
            jid: r.jid,
            reason: r.reason,
            cached: r.cached,
        })
        .collect()
}

/// A cached answer: number, answer, JID, account (its time is left out: see the report on
/// replays refreshing it).
type CacheRow = (String, WhatsApp, Option<String>, Option<String>);

async fn cached(pool: &PgPool, numbers: &[&str]) -> Vec<CacheRow> {
    let numbers: Vec<E164> = numbers.iter().copied().map(e164).collect();
    let how = Lookup {
        max_age: Duration::from_secs(3600),
        details: false,
        simulated: true,
    };
    let mut out: Vec<CacheRow> = cache::lookup(pool, &numbers, how)
        .await
        .unwrap()
        .into_iter()
        .map(|(n, o)| {
            (
                n.as_str().to_owned(),
                o.whatsapp.expect("a cached answer is definite"),
                o.jid,
                o.account,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn usage(pool: &PgPool, task: TaskId) -> Vec<TaskUsage> {
    accounts::task_usage(pool, task).await.unwrap()
}

fn task_usage(checks: i64, details: i64, calls: i64) -> Vec<TaskUsage> {
    vec![TaskUsage {
        account: SHARED.into(),
        checks,
        details,
        calls,
    }]
}

const LONG: Duration = Duration::from_secs(60);

/// Claims a chunk (at most 5 attempts per chunk).
async fn claim(
    pool: &PgPool,
    task: TaskId,
    chunk: i32,
    owner: &str,
    lease: Duration,
) -> Option<Claim> {
    chunks::claim(pool, task, chunk, owner, lease, 5)
        .await
        .unwrap()
}

/// A plain answer of no account.
fn plain(number: &str, whatsapp: WhatsApp, reason: Option<&str>) -> (E164, Outcome) {
    (
        e164(number),
        Outcome {
            whatsapp: Some(whatsapp),
            reason: reason.map(Into::into),
            ..Default::default()
        },
    )
}

// ---------------------------------------------------------------------------------------------
// [`mixed_task`] after chunk 0 is claimed and answered (N1 yes, N2 no), written out.

fn counters_after_chunk_0() -> Counters {
    Counters {
        // Claiming started the task: its invalid row counts as a failure from then on.
        status: TaskStatus::Processing,
        total: 7,
        invalid: 1,
        // N1 (2 rows) + N2 (1 row).
        success: 3,
        failure: 1,
        unknown: 0,
        cached: 0,
        simulated: false,
        chunk_count: 3,
        chunks_done: 0,
    }
}

fn rows_after_chunk_0() -> Vec<Row> {
    vec![
        with_jid(answered(N1, "yes"), J1),
        invalid("not a number"),
        answered(N2, "no"),
        with_jid(answered(N1, "yes"), J1),
        unanswered(N3),
        unanswered(N4),
        unanswered(N5),
    ]
}

fn cache_after_chunk_0() -> Vec<CacheRow> {
    vec![
        (
            N1.into(),
            WhatsApp::Yes,
            Some(J1.into()),
            Some(SHARED.into()),
        ),
        (N2.into(), WhatsApp::No, None, Some(SHARED.into())),
    ]
}

async fn assert_state_after_chunk_0(pool: &PgPool, task: TaskId) {
    assert_eq!(counters(pool, task).await, counters_after_chunk_0());
    assert_eq!(rows(pool, task).await, rows_after_chunk_0());
    assert_eq!(
        cached(pool, &[N1, N2, N3, N4, N5]).await,
        cache_after_chunk_0()
    );
}

// ---------------------------------------------------------------------------------------------
// Storing a chunk's answers twice.

/// A worker's store, made again (a retried job, a second delivery): no row, counter or cached
/// answer changes, and it reports that nothing new was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_a_chunks_answers_twice_changes_nothing() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    shared_account(pool).await;
    let task = mixed_task(pool).await;
    assert!(claim(pool, task, 0, "worker-a", LONG).await.is_some());

    assert_eq!(store_mixed(pool, task, 0).await, 2);
    assert_state_after_chunk_0(pool, task).await;
    assert_eq!(usage(pool, task).await, task_usage(2, 0, 1));

    assert_eq!(store_mixed(pool, task, 0).await, 0);
    assert_state_after_chunk_0(pool, task).await;
    // The answers are still needed: finishing counts the chunk.
    chunks::finish(pool, task, 0, 1).await.unwrap();
    assert_eq!(counters(pool, task).await.chunks_done, 1);
    db.drop_database().await;
}

/// The same store made by two workers at the same moment: together they store each answer
/// once (whichever wins a number), and the task looks as after one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_a_chunks_answers_twice_at_once_changes_nothing() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    shared_account(pool).await;
    let task = mixed_task(pool).await;
    assert!(claim(pool, task, 0, "worker-a", LONG).await.is_some());

    let (a, b) = tokio::join!(store_mixed(pool, task, 0), store_mixed(pool, task, 0));
    assert_eq!(a + b, 2, "each of N1 and N2 stored by exactly one of them");
    assert_state_after_chunk_0(pool, task).await;

    // And once more, racing a third time against a fourth.
    let (a, b) = tokio::join!(store_mixed(pool, task, 0), store_mixed(pool, task, 0));
    assert_eq!((a, b), (0, 0));
    assert_state_after_chunk_0(pool, task).await;
    db.drop_database().await;
}

// ---------------------------------------------------------------------------------------------
// Finishing a chunk twice.

/// Finishing a chunk again neither counts it again nor pushes more work; finishing the last
/// chunk again asks for no second export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_a_chunk_twice_counts_it_once() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    shared_account(pool).await;
    let task = mixed_task(pool).await;

    assert!(claim(pool, task, 0, "worker-a", LONG).await.is_some());
    store_mixed(pool, task, 0).await;
    // Window 1: chunk 0 was never queued, so the window takes chunk 1.
    assert_eq!(
        chunks::finish(pool, task, 0, 1).await.unwrap(),
        Pushes {
            chunks: vec![(task, 1)],
            exports: vec![],
        }
    );
    assert_eq!(counters(pool, task).await.chunks_done, 1);
    assert_eq!(
        chunks::finish(pool, task, 0, 1).await.unwrap(),
        Pushes::default()
    );
    assert_eq!(counters(pool, task).await.chunks_done, 1);
    // A finished chunk is not handed out again.
    assert!(claim(pool, task, 0, "worker-b", LONG).await.is_none());

    for chunk in [1, 2] {
        assert!(claim(pool, task, chunk, "worker-a", LONG).await.is_some());
        store_mixed(pool, task, chunk).await;
    }
    assert_eq!(
        chunks::finish(pool, task, 1, 1).await.unwrap(),
        Pushes {
            chunks: vec![(task, 2)],
            exports: vec![],
        }
    );
    assert_eq!(
        chunks::finish(pool, task, 2, 1).await.unwrap(),
        Pushes {
            chunks: vec![],
            exports: vec![task],
        }
    );
    for chunk in [0, 1, 2] {
        assert_eq!(
            chunks::finish(pool, task, chunk, 1).await.unwrap(),
            Pushes::default(),
            "chunk {chunk} finished again"
        );
    }
    let c = counters(pool, task).await;
    assert_eq!((c.status, c.chunks_done), (TaskStatus::Completed, 3));
    db.drop_database().await;
}

/// Two workers finishing the same chunk at the same moment: it counts once, the next chunk is
/// pushed once, and for the last chunk exactly one export is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_a_chunk_twice_at_once_counts_it_once() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    shared_account(pool).await;
    let task = mixed_task(pool).await;
    for chunk in [0, 1, 2] {
        assert!(claim(pool, task, chunk, "worker-a", LONG).await.is_some());
        store_mixed(pool, task, chunk).await;
    }

    let (a, b) = tokio::join!(
        chunks::finish(pool, task, 0, 1),
        chunks::finish(pool, task, 0, 1)
    );
    let mut pushes = a.unwrap();
    pushes.extend(b.unwrap());
    assert_eq!(
        pushes,
        Pushes {
            chunks: vec![(task, 1)],
            exports: vec![],
        }
    );
    assert_eq!(counters(pool, task).await.chunks_done, 1);

    chunks::finish(pool, task, 1, 1).await.unwrap();
    assert_eq!(counters(pool, task).await.chunks_done, 2);

    let (a, b) = tokio::join!(
        chunks::finish(pool, task, 2, 1),
        chunks::finish(pool, task, 2, 1)
    );
    let mut pushes = a.unwrap();
    pushes.extend(b.unwrap());
    assert_eq!(
        pushes,
        Pushes {
            chunks: vec![],
            exports: vec![task],
        }
    );
    let c = counters(pool, task).await;
    assert_eq!((c.status, c.chunks_done), (TaskStatus::Completed, 3));
    db.drop_database().await;
}

/// A chunk with a number still unanswered is not finished (its work would be lost); once the
/// last answer is stored it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_a_chunk_with_open_numbers_is_refused() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let task = three_number_task(pool).await;
    assert!(claim(pool, task, 0, "worker-a", LONG).await.is_some());
    let first = [plain(N11, WhatsApp::Yes, None)];
    assert_eq!(
        chunks::store_outcomes(pool, task, 0, &first, None)
            .await
            .unwrap(),
        1
    );
    let refused = chunks::finish(pool, task, 0, 1).await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );
    assert_eq!(counters(pool, task).await.chunks_done, 0);

    let rest = [
        plain(N12, WhatsApp::No, None),
        plain(N13, WhatsApp::No, None),
    ];
    assert_eq!(
        chunks::store_outcomes(pool, task, 0, &rest, None)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        chunks::finish(pool, task, 0, 1).await.unwrap(),
        Pushes {
            chunks: vec![],
            exports: vec![task],
        }
    );
    assert_eq!(counters(pool, task).await.chunks_done, 1);
    db.drop_database().await;
}

// ---------------------------------------------------------------------------------------------
// Leases.

/// How long worker A's lease lasts in the lease tests.
const SHORT: Duration = Duration::from_secs(2);
/// Slack between Postgres's clock and this process's (same machine).
const CLOCK_SLACK: Duration = Duration::from_millis(100);

/// A claimed chunk is refused to everyone else while its lease lives, and handed to the next
/// worker once it has run out; then the old owner cannot renew or give it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_chunk_is_refused_to_others_until_its_lease_runs_out() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let task = three_number_task(pool).await;

    let t0 = Instant::now();
    let a = claim(pool, task, 0, "worker-a", SHORT)
        .await
        .expect("a free chunk");
    assert_eq!(strs(&a.numbers), [N11, N12, N13]);
    assert_eq!(
        (a.kind, a.user_id.as_str(), a.use_cache),
        (TaskKind::Simple, USER, true)
    );
    assert!(claim(pool, task, 0, "worker-b", LONG).await.is_none());
    assert!(lifecycle::has_live_lease(pool, task).await.unwrap());

    let b = wait_for(
        "worker-a's lease to run out",
        Duration::from_secs(20),
        || claim(pool, task, 0, "worker-b", LONG),
    )
    .await;
    let waited = t0.elapsed();
    assert!(
        waited + CLOCK_SLACK >= SHORT,
        "reclaimed after {waited:?}, before the {SHORT:?} lease ran out"
    );
    // Nothing was stored: the new owner gets every number.
    assert_eq!(strs(&b.numbers), [N11, N12, N13]);

    // The old owner learns it lost the lease; the new one keeps it.
    assert!(
        !chunks::renew(pool, task, 0, "worker-a", SHORT)
            .await
            .unwrap()
    );
    assert!(
        chunks::renew(pool, task, 0, "worker-b", LONG)
            .await
            .unwrap()
    );
    // Giving back or parking a lease one no longer holds does nothing.
    lifecycle::release(pool, task, 0, "worker-a").await.unwrap();
    lifecycle::park(pool, task, 0, "worker-a", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(claim(pool, task, 0, "worker-c", LONG).await.is_none());
    assert!(lifecycle::has_live_lease(pool, task).await.unwrap());
    // The holder's give-back frees the chunk at once.
    lifecycle::release(pool, task, 0, "worker-b").await.unwrap();
    let c = claim(pool, task, 0, "worker-c", LONG)
        .await
        .expect("a released chunk");
    assert_eq!(strs(&c.numbers), [N11, N12, N13]);
    db.drop_database().await;
}

/// Worker A stores part of a chunk and stalls; B reclaims it after A's lease ran out and gets
/// only the open numbers. A stale worker is not fenced off (the documented rule is per number,
/// not per owner: `store_outcomes` stores "numbers of a chunk that have none yet", `finish`
/// marks a chunk done "once" when every number is answered): A's late store adds only the
/// answer nobody had, the first answer of each number stays, A's finish counts the chunk once,
/// and B's writes afterwards change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_worker_only_adds_missing_answers_and_the_chunk_finishes_once() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let task = three_number_task(pool).await;
    assert!(claim(pool, task, 0, "worker-a", SHORT).await.is_some());
    let a_first = [plain(N11, WhatsApp::Yes, None)];
    assert_eq!(
        chunks::store_outcomes(pool, task, 0, &a_first, None)
            .await
            .unwrap(),
        1
    );

    let b = wait_for(
        "worker-a's lease to run out",
        Duration::from_secs(20),
        || claim(pool, task, 0, "worker-b", LONG),
    )
    .await;
    assert_eq!(strs(&b.numbers), [N12, N13], "only the open numbers");
    let b_first = [plain(N12, WhatsApp::No, None)];
    assert_eq!(
        chunks::store_outcomes(pool, task, 0, &b_first, None)
            .await
            .unwrap(),
        1
    );

    // A, unaware, stores its answers for the whole chunk: only N13 is new; N12 keeps B's `no`.
    let a_late = [
        plain(N11, WhatsApp::Yes, None),
        plain(N12, WhatsApp::Yes, None),
        plain(N13, WhatsApp::Unknown, Some("stale worker")),
    ];
    assert_eq!(
        chunks::store_outcomes(pool, task, 0, &a_late, None)
            .await
            .unwrap(),
        1
    );
    let processing = Counters {
        status: TaskStatus::Processing,
        total: 3,
        invalid: 0,
        success: 2,
        failure: 1,
        unknown: 1,
        cached: 0,
        simulated: false,
        chunk_count: 1,
        chunks_done: 0,
    };
    assert_eq!(counters(pool, task).await, processing);

    // Every number has an answer, so A's finish completes the chunk and the task.
    assert_eq!(
        chunks::finish(pool, task, 0, 1).await.unwrap(),
        Pushes {
            chunks: vec![],
            exports: vec![task],
        }
    );
    // B learns it lost the chunk; its own late store and finish change nothing.
    assert!(
        !chunks::renew(pool, task, 0, "worker-b", LONG)
            .await
            .unwrap()
    );
    let b_late = [plain(N13, WhatsApp::Yes, None)];
    assert_eq!(
        chunks::store_outcomes(pool, task, 0, &b_late, None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        chunks::finish(pool, task, 0, 1).await.unwrap(),
        Pushes::default()
    );
    assert!(claim(pool, task, 0, "worker-c", LONG).await.is_none());

    assert_eq!(
        counters(pool, task).await,
        Counters {
            status: TaskStatus::Completed,
            chunks_done: 1,
            ..processing
        }
    );
    assert_eq!(
        rows(pool, task).await,
        vec![
            answered(N11, "yes"),
            answered(N12, "no"),
            with_reason(answered(N13, "unknown"), "stale worker"),
        ]
    );
    db.drop_database().await;
}

// ---------------------------------------------------------------------------------------------
// Counters.

fn counters_when_complete() -> Counters {
    Counters {
        status: TaskStatus::Completed,
        total: 7,
        invalid: 1,
        // yes: N1 (2 rows), N4 (1, from the cache); no: N2 (1).
        success: 4,
        // The invalid row, N3 (unknown), N5 (invalid on WhatsApp, stored unknown).
        failure: 3,
        unknown: 2,
        cached: 1,
        simulated: false,
        chunk_count: 3,
        chunks_done: 3,
    }
}

fn rows_when_complete() -> Vec<Row> {
    vec![
        with_jid(answered(N1, "yes"), J1),
        invalid("not a number"),
        answered(N2, "no"),
        with_jid(answered(N1, "yes"), J1),
        with_reason(answered(N3, "unknown"), "backend timed out"),
        Row {
            cached: true,
            ..with_jid(answered(N4, "yes"), J4)
        },
        answered(N5, "unknown"),
    ]
}

/// Every chunk claimed, answered and finished in order: the task completes with counters that
/// add up to its rows, and each row carries the answer stored for its number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_the_answers_once_every_chunk_is_answered() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    shared_account(pool).await;
    let task = mixed_task(pool).await;
    assert_eq!(
        counters(pool, task).await,
        Counters {
            status: TaskStatus::Pending,
            total: 7,
            invalid: 1,
            success: 0,
            failure: 0,
            unknown: 0,
            cached: 0,
            simulated: false,
            chunk_count: 3,
            chunks_done: 0,
        }
    );
    // The window takes the first two chunks (RETURNING gives them in no promised order).
    let mut first = chunks::advance(pool, task, 2).await.unwrap();
    first.chunks.sort_by_key(|(_, c)| *c);
    assert_eq!(
        first,
        Pushes {
            chunks: vec![(task, 0), (task, 1)],
            exports: vec![],
        }
    );

    assert!(claim(pool, task, 0, "worker-a", LONG).await.is_some());
    assert_eq!(store_mixed(pool, task, 0).await, 2);
    assert_eq!(counters(pool, task).await, counters_after_chunk_0());
    assert_eq!(
        chunks::finish(pool, task, 0, 2).await.unwrap(),
        Pushes {
            chunks: vec![(task, 2)],
            exports: vec![],
        }
    );

    assert!(claim(pool, task, 1, "worker-b", LONG).await.is_some());
    assert_eq!(store_mixed(pool, task, 1).await, 2);
    assert_eq!(
        counters(pool, task).await,
        Counters {
            status: TaskStatus::Processing,
            success: 4,
            failure: 2,
            unknown: 1,
            cached: 1,
            chunks_done: 1,
            ..counters_when_complete()
        }
    );
    assert_eq!(
        chunks::finish(pool, task, 1, 2).await.unwrap(),
        Pushes::default()
    );

    assert!(claim(pool, task, 2, "worker-a", LONG).await.is_some());
    assert_eq!(store_mixed(pool, task, 2).await, 1);
    assert_eq!(
        chunks::finish(pool, task, 2, 2).await.unwrap(),
        Pushes {
            chunks: vec![],
            exports: vec![task],
        }
    );

    let c = counters(pool, task).await;
    assert_eq!(c, counters_when_complete());
    assert_eq!(c.success + c.failure, 7, "every row counted once");
    assert_eq!(c.chunks_done, c.chunk_count);
    assert_eq!(rows(pool, task).await, rows_when_complete());
    // Checks: 2 + 1 + 1 in 3 calls; N4 came from the cache for nothing.
    assert_eq!(usage(pool, task).await, task_usage(4, 0, 3));
    // Only fresh definite answers of the shared account are cached: not N3 or N5 (unknown),
    // not N4 (itself from the cache).
    assert_eq!(
        cached(pool, &[N1, N2, N3, N4, N5]).await,
        cache_after_chunk_0()
    );
    db.drop_database().await;
}

/// The whole task processed a second time, as re-delivered jobs would at the store: claims are
/// refused, stores add nothing, finishes push nothing, and the task stays exactly as after the
/// first pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_every_chunk_twice_changes_nothing() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    shared_account(pool).await;
    let task = mixed_task(pool).await;
    for chunk in [0, 1, 2] {
        assert!(claim(pool, task, chunk, "worker-a", LONG).await.is_some());
        store_mixed(pool, task, chunk).await;
        chunks::finish(pool, task, chunk, 3).await.unwrap();
    }
    assert_eq!(counters(pool, task).await, counters_when_complete());

    for chunk in [0, 1, 2] {
        assert!(claim(pool, task, chunk, "worker-b", LONG).await.is_none());
        assert_eq!(store_mixed(pool, task, chunk).await, 0, "chunk {chunk}");
        assert_eq!(
            chunks::finish(pool, task, chunk, 3).await.unwrap(),
            Pushes::default(),
            "chunk {chunk}"
        );
    }
    assert_eq!(counters(pool, task).await, counters_when_complete());
    assert_eq!(rows(pool, task).await, rows_when_complete());
    assert_eq!(
        cached(pool, &[N1, N2, N3, N4, N5]).await,
        cache_after_chunk_0()
    );
    db.drop_database().await;
}

// ---------------------------------------------------------------------------------------------
// The account state machine: throttles, cool-downs, strikes, recovery and going out of
// rotation, as the rules in `accounts::rate_limited`, `recovered` and `set_state` state them.
// Time is moved by setting `cool_until`, never by waiting.

const BASE: Duration = Duration::from_secs(60);
const MAX: Duration = Duration::from_secs(3600);

/// The account's state, strikes and seconds of cool-down left (rounded).
async fn account_state(pool: &PgPool, id: &str) -> (AccountState, i32, Option<i64>) {
    let (state, strikes, left): (String, i32, Option<f64>) = sqlx::query_as(
        "SELECT state, strikes, extract(epoch FROM cool_until - now())::float8 \
         FROM accounts WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    (
        state.parse().unwrap(),
        strikes,
        left.map(|s| s.round() as i64),
    )
}

/// The account is in `state` with `strikes`, and its cool-down (if `left` names one) ends
/// within the next `left` seconds but not more than two seconds sooner (the test's own time).
async fn assert_account(pool: &PgPool, state: AccountState, strikes: i32, left: Option<i64>) {
    let (got_state, got_strikes, got_left) = account_state(pool, SHARED).await;
    assert_eq!((got_state, got_strikes), (state, strikes));
    match (left, got_left) {
        (Some(want), Some(got)) => assert!(
            (want - 2..=want).contains(&got),
            "cool-down ends in {got} s, not {want} s"
        ),
        (want, got) => assert_eq!(want, got, "cool-down"),
    }
}

/// Ends the account's cool-down now, as the clock would.
async fn cool_down_over(pool: &PgPool, id: &str) {
    sqlx::query("UPDATE accounts SET cool_until = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

async fn throttle(pool: &PgPool, backoff: Option<u64>) -> Option<chrono::DateTime<chrono::Utc>> {
    let backoff = backoff.map(Duration::from_secs);
    accounts::rate_limited(pool, SHARED, backoff, BASE, MAX, "throttled")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_cool_an_account_down_for_doubling_times_and_one_answer_forgives_them() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    shared_account(pool).await;
    use AccountState::*;
    // A throttle without a backoff: the base time, one strike.
    assert!(throttle(pool, None).await.is_some());
    assert_account(pool, CoolingDown, 1, Some(60)).await;
    // Four more throttles of calls already in flight: still one strike, the same end.
    for _ in 0..4 {
        throttle(pool, None).await;
    }
    assert_account(pool, CoolingDown, 1, Some(60)).await;
    // One of them with the server's backoff of 300 s: the cool-down lasts that long.
    throttle(pool, Some(300)).await;
    assert_account(pool, CoolingDown, 1, Some(300)).await;
    // An answer to a call sent before the cool-down began changes nothing.
    assert!(!accounts::recovered(pool, SHARED).await.unwrap());
    assert_account(pool, CoolingDown, 1, Some(300)).await;
    // Over, and throttled again at once: a second strike, twice the base.
    cool_down_over(pool, SHARED).await;
    throttle(pool, None).await;
    assert_account(pool, CoolingDown, 2, Some(120)).await;
    // And again: 240 s, then 480 s.
    for (strikes, secs) in [(3, 240), (4, 480)] {
        cool_down_over(pool, SHARED).await;
        throttle(pool, None).await;
        assert_account(pool, CoolingDown, strikes, Some(secs)).await;
    }
    // Doubling stops at the longest cool-down (2^6 × 60 s would be 3840 s).
    for _ in 0..3 {
        cool_down_over(pool, SHARED).await;
        throttle(pool, None).await;
    }
    assert_account(pool, CoolingDown, 7, Some(3600)).await;
    // The first good answer after the cool-down: connected, strikes forgiven.
    cool_down_over(pool, SHARED).await;
    assert!(accounts::recovered(pool, SHARED).await.unwrap());
    assert_account(pool, Connected, 0, None).await;
    // A second answer has nothing to forgive.
    assert!(!accounts::recovered(pool, SHARED).await.unwrap());
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_out_of_rotation_is_not_brought_back_by_answers_or_throttles() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    shared_account(pool).await;
    use AccountState::*;
    throttle(pool, None).await;
    // Logged out while cooling down: out of rotation, the strike stays for the record.
    let moved = accounts::set_state(pool, SHARED, LoggedOut, Some("logged out"), None)
        .await
        .unwrap();
    assert!(moved);
    assert_account(pool, LoggedOut, 1, None).await;
    // The same state and reason again is no change.
    let again = accounts::set_state(pool, SHARED, LoggedOut, Some("logged out"), None)
        .await
        .unwrap();
    assert!(!again);
    // Late answers and late throttles of calls in flight leave it logged out.
    assert!(!accounts::recovered(pool, SHARED).await.unwrap());
    assert_eq!(throttle(pool, None).await, None);
    assert_account(pool, LoggedOut, 1, None).await;
    // A temporary ban keeps its end; connected again (the probe) forgives the strikes.
    let until = chrono::Utc::now() + chrono::Duration::seconds(600);
    accounts::set_state(pool, SHARED, Banned, Some("banned"), Some(until))
        .await
        .unwrap();
    assert_account(pool, Banned, 1, Some(600)).await;
    accounts::set_state(pool, SHARED, Connected, Some("works again"), None)
        .await
        .unwrap();
    assert_account(pool, Connected, 0, None).await;
    db.drop_database().await;
}

// ---------------------------------------------------------------------------------------------
// A result file agrees with itself: every batch of rows shows the answers as they were when
// the first batch was read, whatever is stored meanwhile.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_rows_read_every_batch_in_one_snapshot() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    users::create(pool, USER).await.unwrap();
    // 66 blocks of one row each: the rows come in two batches of 64 blocks and 2.
    let digits = |i: i64| 41_790_100_000 + i;
    let blocks: Vec<Block> = (1..=66)
        .map(|i| Block {
            block_no: i as i32 - 1,
            numbers: format!("{{{}}}", digits(i)),
            raw: None,
        })
        .collect();
    let all: Vec<String> = (1..=66).map(|i| digits(i).to_string()).collect();
    let chunk = ChunkRow {
        chunk_no: 0,
        numbers: format!("{{{}}}", all.join(",")),
        rows: format!("{{{}}}", vec!["1"; 66].join(",")),
    };
    let new = NewTask {
        id: TaskId::new(),
        user_id: USER.into(),
        kind: TaskKind::Simple,
        result_format: ResultFormat::Csv,
        default_region: None,
        chunk_size: 66,
        use_cache: true,
        input_name: None,
        input_key: None,
        result_columns: ResultColumns::Full,
    };
    let (tx, rx) = mpsc::channel(4);
    tx.send(Batch::Blocks(blocks)).await.unwrap();
    tx.send(Batch::Chunks(vec![chunk])).await.unwrap();
    drop(tx);
    let summary = IngestSummary {
        total: 66,
        invalid: 0,
        distinct: 66,
        chunks: 1,
        invalid_national: 0,
    };
    let task = tasks::insert(
        pool,
        &new,
        Quota::default(),
        rx,
        std::future::ready(Ok::<_, std::convert::Infallible>(summary)),
    )
    .await
    .expect("task stored")
    .id;
    let answer = |i: i64| {
        sqlx::query("INSERT INTO task_results (task_id, number, outcome) VALUES ($1, $2, 'yes')")
            .bind(task.to_string())
            .bind(digits(i))
            .execute(pool)
    };
    // Row 65 is answered before the file is begun; row 66 after its first batch was read.
    answer(65).await.unwrap();
    let mut stream = chunks::result_rows(pool, task);
    let first = stream.try_next().await.unwrap().expect("a first batch");
    assert_eq!(first.len(), 64);
    answer(66).await.unwrap();
    let second = stream.try_next().await.unwrap().expect("a second batch");
    assert!(stream.try_next().await.unwrap().is_none());
    let outcomes: Vec<(Option<&str>, Option<&str>)> = second
        .iter()
        .map(|r| (r.e164.as_deref(), r.outcome.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Some("+41790100065"), Some("yes")),
            (Some("+41790100066"), None),
        ],
        "the second batch shows the answers of the first one's time"
    );
    drop(stream);
    db.drop_database().await;
}
