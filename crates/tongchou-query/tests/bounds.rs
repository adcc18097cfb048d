//! What functions build is bounded as what operators hold is (issue 39): a statement that
//! would build too much in one value, one batch or its folded constants is refused before
//! the memory is taken, and what stays under the limits answers as DataFusion does.

mod common;

use std::time::{Duration, Instant};

use deltalake::datafusion::prelude::SessionContext;
use proptest::prelude::*;
use tongchou_catalog::{Actor, Catalog};
use tongchou_model::UserRole;
use tongchou_query::{Engine, QueryError};
use tongchou_store::DataDir;

const PURPOSE: &str = "subsidy_review";
const USER: &str = "analyst";

async fn engine() -> (tempfile::TempDir, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::init(&tmp.path().join("data")).await.unwrap();
    let units = tongchou_sim::units();
    let catalog = Catalog::open(dir.clone()).await.unwrap();
    catalog.add_units(&units, &Actor::Operator).await.unwrap();
    let users = [(USER, units[27].code.as_str(), UserRole::Analyst)];
    let (_, engine) = common::engine_with(&dir, &users).await;
    (tmp, engine)
}

/// The statement's only value, as text.
async fn answer(engine: &Engine, sql: &str) -> String {
    let answer = engine.run(USER, PURPOSE, sql).await.unwrap();
    let column = answer.batches[0].column(0);
    arrow::util::display::array_value_to_string(column, 0).unwrap()
}

async fn refusal(engine: &Engine, sql: &str) -> String {
    match engine.run(USER, PURPOSE, sql).await {
        Err(e @ QueryError::Exhausted(_)) => e.to_string(),
        Err(other) => panic!("{sql}: refused as {other:?}"),
        Ok(_) => panic!("{sql}: answered"),
    }
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_repeat_is_refused_at_once_without_taking_the_memory() {
    let (_tmp, engine) = engine().await;
    let before = resident_bytes();
    let started = Instant::now();
    let message = refusal(&engine, "SELECT length(repeat('x', 1500000000))").await;
    let took = started.elapsed();
    let grew = resident_bytes().saturating_sub(before);
    eprintln!(
        "refused in {took:?}, resident grew {} KiB: {message}",
        grew >> 10
    );
    assert!(
        message.contains("repeat would build 1430.5 MB in one value")
            && message.contains("64.0 MB per value"),
        "{message}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(grew < 64 << 20, "{grew}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pads_replace_chains_lists_and_doubling_are_refused() {
    let (_tmp, engine) = engine().await;
    let nested = (0..3).fold("repeat('a', 100)".to_string(), |s, _| {
        format!("replace({s}, 'a', repeat('a', 100))")
    });
    let doubled = "WITH a AS (SELECT repeat('x', 40000000) AS s), b AS (SELECT s || s AS s FROM a), \
         c AS (SELECT s || s AS s FROM b), d AS (SELECT s || s AS s FROM c) SELECT length(s) FROM d";
    let many = (0..5)
        .map(|i| format!("length(repeat('{i}', 30000000))"))
        .collect::<Vec<_>>()
        .join(" + ");
    for (sql, names) in [
        ("SELECT lpad('x', 2000000000)".to_string(), "lpad"),
        ("SELECT rpad('x', 100000000, 'ab')".into(), "rpad"),
        (format!("SELECT length({nested})"), "replace"),
        ("SELECT regexp_replace(repeat('x', 1000000), '', repeat('y', 100), 'g')".into(), "regexp_replace"),
        ("SELECT cardinality(array_repeat(1, 1000000000))".into(), "array_repeat"),
        ("SELECT cardinality(array_repeat(array_repeat(1, 10000), 10000))".into(), "array_repeat"),
        ("SELECT cardinality(range(1, 10000000000))".into(), "range"),
        ("SELECT cardinality(generate_series(TIMESTAMP '1970-01-01', TIMESTAMP '2200-01-01', INTERVAL '1 second'))".into(), "generate_series"),
        ("SELECT cardinality(array_resize([1], 1000000000, 0))".into(), "array_resize"),
        ("SELECT cardinality(string_to_array(repeat('x', 10000000), NULL))".into(), "string_to_array"),
        (format!("SELECT {many}"), "constants"),
    ] {
        let started = Instant::now();
        let message = refusal(&engine, &sql).await;
        assert!(message.contains(names), "{sql}: {message}");
        assert!(started.elapsed() < Duration::from_secs(5), "{sql}");
    }
    // Weighed after it is built: refused at the step past the batch limit.
    let message = refusal(&engine, doubled).await;
    assert!(message.contains("weighed built 305.2 MB"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_over_rows_is_bounded_per_batch() {
    let (_tmp, engine) = engine().await;
    let sql = "SELECT max(length(repeat('x', CAST(value AS BIGINT) * 1000))) FROM generate_series(1, 8000)";
    let message = refusal(&engine, sql).await;
    assert!(message.contains("for 8000 rows"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_of_long_strings_is_held_in_the_pool() {
    let (_tmp, mut engine) = engine().await;
    engine.limits.memory_bytes = 32 << 20;
    for sql in [
        "SELECT length(string_agg(repeat('x', 1000), ',')) FROM generate_series(1, 100000)",
        "SELECT cardinality(array_agg(repeat('x', 1000))) FROM generate_series(1, 100000)",
    ] {
        let message = refusal(&engine, sql).await;
        assert!(
            message.contains("needs more memory than allowed"),
            "{message}"
        );
    }
    let small = "SELECT length(string_agg(repeat('x', 10), ',')) FROM generate_series(1, 1000)";
    assert_eq!(answer(&engine, small).await, "10999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_big_to_hold_is_refused() {
    let (_dir, engine) = engine().await;
    // Each value is a constant under the value limit; together they are 300 MB.
    let message = refusal(
        &engine,
        "SELECT repeat('x', 1000000) FROM generate_series(1, 300)",
    )
    .await;
    assert!(
        message.contains("the answer holds over 256 MiB"),
        "{message}"
    );
    assert_eq!(
        answer(
            &engine,
            "SELECT count(*) FROM (SELECT repeat('x', 1000) FROM generate_series(1, 300))"
        )
        .await,
        "300"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_calls_answer_as_before() {
    let (_tmp, engine) = engine().await;
    for (sql, want) in [
        ("SELECT repeat('ab', 3)", "ababab"),
        ("SELECT lpad('7', 3, '0')", "007"),
        ("SELECT replace('a-b-c', '-', '--')", "a--b--c"),
        ("SELECT 'a' || 'b' || NULL", ""),
        ("SELECT array_repeat(1, 3)", "[1, 1, 1]"),
        ("SELECT range(1, 4)", "[1, 2, 3]"),
        ("SELECT concat('a', 'b', 'c')", "abc"),
    ] {
        assert_eq!(answer(&engine, sql).await, want, "{sql}");
    }
    let answer = engine
        .run(USER, PURPOSE, "SELECT 'a' || 'b'")
        .await
        .unwrap();
    assert!(!answer.schema.field(0).name().contains("weighed"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn results_under_the_limits_are_datafusions(
        text in "[a-z中é ]{0,6}",
        count in -2i64..40,
        fill in "[0-9中]{0,3}",
    ) {
        let sql = format!(
            "SELECT repeat('{text}', {count}) || '|' || lpad('{text}', {count}, '{fill}') || '|' || rpad('{text}', {count}) || '|' || replace('{text}', 'a', '{fill}')"
        );
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (ours, theirs) = runtime.block_on(async {
            let (_tmp, engine) = engine().await;
            let plain = SessionContext::new().sql(&sql).await.unwrap().collect().await.unwrap();
            let plain = arrow::util::display::array_value_to_string(plain[0].column(0), 0).unwrap();
            (answer(&engine, &sql).await, plain)
        });
        prop_assert_eq!(ours, theirs);
    }
}
