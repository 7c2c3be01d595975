//! Upgrading a database that holds tasks: migration 0003 moves rows, numbers and answers of
//! the old layout into blocks, chunk arrays and task_results, and the task carries on.

use crate::common::{Infra, unique};
use futures::TryStreamExt;
use wacheck_core::TaskId;

const V1: &str = include_str!("../../../../migrations/0001_init.sql");
const V2: &str = include_str!("../../../../migrations/0002_lifecycle.sql");
const V3: &str = include_str!("../../../../migrations/0003_compact_rows.sql");
const V4: &str = include_str!("../../../../migrations/0004_accounts.sql");
/// The migrations after those, which today's store code needs.
const LATER: &[&str] = &[
    include_str!("../../../../migrations/0005_auth.sql"),
    include_str!("../../../../migrations/0006_history.sql"),
    include_str!("../../../../migrations/0007_daily_checks.sql"),
    include_str!("../../../../migrations/0008_result_files.sql"),
];

#[tokio::test]
async fn compact_rows_migration_keeps_tasks_and_answers() {
    let infra = Infra::default();
    let db = unique("wacheck_test_upgrade_");
    let admin = sqlx::PgPool::connect(&format!("{}/postgres", infra.admin_url))
        .await
        .expect("postgres is running");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&format!("{}/{db}", infra.admin_url))
        .await
        .unwrap();
    sqlx::raw_sql(V1).execute(&pool).await.unwrap();
    sqlx::raw_sql(V2).execute(&pool).await.unwrap();

    // A task of 5 rows in the old layout (chunk size 2): rows 0 and 3 carry the same number,
    // row 2 is invalid; the first chunk is answered and done, the second half answered.
    let id = TaskId::new();
    let t = id.to_string();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id) VALUES ('u');
         INSERT INTO tasks (id, user_id, kind, status, result_format, total, invalid,
           distinct_numbers, chunk_size, chunk_count, chunks_done, success, failure)
           VALUES ('{t}', 'u', 'simple', 'processing', 'csv', 5, 1, 3, 2, 2, 1, 3, 1);
         INSERT INTO task_rows (task_id, row_no, raw, num_idx) VALUES
           ('{t}', 0, NULL, 0), ('{t}', 1, NULL, 1), ('{t}', 2, 'n/a', NULL),
           ('{t}', 3, NULL, 0), ('{t}', 4, NULL, 2);
         INSERT INTO task_numbers (task_id, num_idx, e164, rows, outcome) VALUES
           ('{t}', 0, '+41791110000', 2, 'yes'), ('{t}', 1, '+41791110001', 1, 'no'),
           ('{t}', 2, '+41791110002', 1, NULL);
         INSERT INTO task_chunks (task_id, chunk_no, enqueued_at, done_at) VALUES
           ('{t}', 0, now(), now()), ('{t}', 1, now(), NULL);"
    )))
    .execute(&pool)
    .await
    .unwrap();

    sqlx::raw_sql(V3).execute(&pool).await.unwrap();
    sqlx::raw_sql(V4).execute(&pool).await.unwrap();
    let simulated: bool = sqlx::query_scalar("SELECT simulated FROM tasks WHERE id = $1")
        .bind(&t)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        simulated,
        "answers from before the account pool were simulated"
    );

    let chunks: Vec<(i32, Vec<i64>, Vec<i32>, i32)> = sqlx::query_as(
        "SELECT chunk_no, numbers, rows, answered FROM task_chunks WHERE task_id = $1 \
         ORDER BY chunk_no",
    )
    .bind(&t)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        chunks,
        vec![
            (0, vec![41791110000, 41791110001], vec![2, 1], 2),
            (1, vec![41791110002], vec![1], 0)
        ]
    );

    // Today's code on the upgraded database: the later migrations first.
    for later in LATER {
        sqlx::raw_sql(*later).execute(&pool).await.unwrap();
    }
    // The open chunk is claimed with its one open number, answered, and finished.
    let claim = wacheck_store::chunks::claim(
        &pool,
        id,
        1,
        "upgrade-test",
        std::time::Duration::from_secs(60),
        5,
    )
    .await
    .unwrap()
    .expect("open chunk");
    assert_eq!(
        claim
            .numbers
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect::<Vec<_>>(),
        ["+41791110002"]
    );
    let answer = wacheck_core::Outcome {
        whatsapp: Some(wacheck_core::WhatsApp::No),
        ..Default::default()
    };
    let stored = wacheck_store::chunks::store_outcomes(
        &pool,
        id,
        1,
        &[(claim.numbers[0].clone(), answer)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(stored, 1);
    // Even with its `answered` count wrong, a chunk whose numbers all have answers finishes.
    sqlx::query("UPDATE task_chunks SET answered = 0 WHERE task_id = $1 AND chunk_no = 1")
        .bind(&t)
        .execute(&pool)
        .await
        .unwrap();
    let pushes = wacheck_store::chunks::finish(&pool, id, 1, 2)
        .await
        .unwrap();
    assert_eq!(pushes.exports, vec![id]);

    // Every row, in input order, with its answer.
    let batches: Vec<Vec<_>> = wacheck_store::chunks::result_rows(&pool, id)
        .try_collect()
        .await
        .unwrap();
    let rows: Vec<_> = batches.into_iter().flatten().collect();
    let shown: Vec<(Option<String>, Option<String>, Option<String>)> = rows
        .into_iter()
        .map(|r| (r.raw, r.e164, r.outcome))
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        shown,
        vec![
            (None, s("+41791110000"), s("yes")),
            (None, s("+41791110001"), s("no")),
            (s("n/a"), None, None),
            (None, s("+41791110000"), s("yes")),
            (None, s("+41791110002"), s("no")),
        ]
    );
    let (success, failure): (i64, i64) =
        sqlx::query_as("SELECT success, failure FROM tasks WHERE id = $1")
            .bind(&t)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((success, failure), (4, 1));
    let answered: i32 = sqlx::query_scalar(
        "SELECT answered FROM task_chunks WHERE task_id = $1 AND chunk_no = 1 AND done_at IS NOT NULL",
    )
    .bind(&t)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(answered, 1);
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
}
