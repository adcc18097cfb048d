//! The audit ledger's numbers: durable appends per second under concurrent writers (group
//! commit), inclusion and consistency proofs in a 100-million-entry tree, and verification
//! of a 10-million-entry ledger beside `sha256sum` over the same bytes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tongchou_ledger::entry::{ALLOWED, Entry};
use tongchou_ledger::merkle::{Subtrees, inclusion_proof_of, root_of};
use tongchou_ledger::tree_store::TreeStore;
use tongchou_ledger::{Committer, Ledger, leaf_hash, verify_consistency, verify_inclusion};

use crate::access::report;

/// A statement's entry as a front door writes it (about 500 bytes).
fn statement_entry(i: u64) -> Vec<u8> {
    let mut e = Entry::new("statement", "pg", ALLOWED);
    e.user = Some(format!("analyst{}", i % 500));
    e.unit = Some("11440605752031440X".into());
    e.purpose = Some("subsidy_review".into());
    e.statement = Some(format!(
        "SELECT person_id, name, arrears FROM social_insurance WHERE person_id = '…' -- {i}"
    ));
    e.resources = vec!["306001002/000002".into()];
    e.fields = vec!["person_id".into(), "name".into(), "arrears".into()];
    e.masks.insert("name".into(), "chinese_name".into());
    e.rows = Some(1);
    e.result_digest = Some(format!("sha256:{}", hex_of(&leaf_hash(&i.to_le_bytes()))));
    e.subjects = vec![hex_of(&leaf_hash(&(i / 3).to_be_bytes()))[..32].to_string()];
    e.to_bytes()
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fresh(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

pub fn run(work: &Path, tree_size: u64, verify_entries: u64) -> Result<()> {
    // One part at a time on disk: the tree alone is 64 bytes per entry.
    appends(&work.join("appends"))?;
    std::fs::remove_dir_all(work.join("appends"))?;
    proofs(&work.join("tree"), tree_size)?;
    std::fs::remove_dir_all(work.join("tree"))?;
    verification(&work.join("verify"), verify_entries)?;
    Ok(())
}

fn appends(dir: &Path) -> Result<()> {
    println!("Durable appends (each acknowledged only after its batch's fdatasync):");
    for writers in [1usize, 16, 256] {
        fresh(dir)?;
        let ledger = Ledger::open(&dir.join("ledger"), &dir.join("config"), "bench/ledger")?;
        let committer = Committer::start(ledger);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let (committer, stop, done, latencies) = (
                    committer.clone(),
                    stop.clone(),
                    done.clone(),
                    latencies.clone(),
                );
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    let mut i = w as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let entry = statement_entry(i);
                        let t = Instant::now();
                        committer.append_blocking(entry).expect("append");
                        if i.is_multiple_of(16) {
                            mine.push(t.elapsed());
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        i += writers as u64;
                    }
                    latencies.lock().unwrap().extend(mine);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(8));
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
        let seconds = started.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!(
            "  {writers:>3} writers: {n} entries in {seconds:.1} s = {:.0} entries/s",
            n as f64 / seconds
        );
        report(
            &format!("{writers:>3} writers, latency of one append"),
            std::mem::take(&mut latencies.lock().unwrap()),
        );
        let ledger = committer.ledger();
        let size = ledger.len();
        let verified =
            tongchou_ledger::verify::verify(&dir.join("ledger"), &dir.join("config"), None)?;
        anyhow::ensure!(verified.ok(), "the benchmark's ledger does not verify");
        anyhow::ensure!(size == n + 1, "every acknowledged entry is in the log");
    }
    Ok(())
}

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) % n
    }
}

fn proofs(dir: &Path, size: u64) -> Result<()> {
    fresh(dir)?;
    println!("Proofs in a tree of {size} entries (the tree on disk, 64 bytes per entry):");
    let started = Instant::now();
    let mut store = TreeStore::open(dir, u64::MAX)?;
    let chunk = 1u64 << 20;
    let mut at = 0;
    while at < size {
        let end = (at + chunk).min(size);
        let leaves: Vec<_> = (at..end).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        store.extend(&leaves)?;
        at = end;
    }
    store.sync()?;
    println!(
        "  built in {:.1} s ({:.2} GB on disk)",
        started.elapsed().as_secs_f64(),
        dir_bytes(&dir.join("tree"))? as f64 / 1e9
    );
    let root = root_of(&store, size)?.expect("root");
    let mut random = Lcg(2015);
    let mut samples = Vec::new();
    for _ in 0..20_000 {
        let index = random.below(size);
        let t = Instant::now();
        let proof = inclusion_proof_of(&store, index, size)?.expect("proof");
        samples.push(t.elapsed());
        anyhow::ensure!(verify_inclusion(
            index,
            size,
            &leaf_hash(&index.to_le_bytes()),
            &proof,
            &root
        ));
    }
    report("inclusion proof (read from the tree files)", samples);
    let mut samples = Vec::new();
    for _ in 0..5_000 {
        let old = 1 + random.below(size - 1);
        let t = Instant::now();
        let proof =
            tongchou_ledger::merkle::consistency_proof_of(&store, old, size)?.expect("proof");
        samples.push(t.elapsed());
        let old_root = root_of(&store, old)?.expect("root");
        anyhow::ensure!(verify_consistency(old, size, &old_root, &root, &proof));
    }
    report("consistency proof", samples);
    anyhow::ensure!(store.size() == size);
    Ok(())
}

/// Bytes of the files under `dir`, subdirectories included.
pub(crate) fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let meta = item.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&item.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn verification(dir: &Path, entries: u64) -> Result<()> {
    fresh(dir)?;
    println!("Verifying a ledger of {entries} entries:");
    let started = Instant::now();
    let mut ledger = Ledger::open(&dir.join("ledger"), &dir.join("config"), "bench/ledger")?;
    let batch = 10_000;
    let mut i = 0;
    while i < entries {
        let n = batch.min(entries - i);
        let unnumbered: Vec<Vec<u8>> = (i..i + n).map(statement_entry).collect();
        ledger.append(&unnumbered)?;
        i += n;
        if i.is_multiple_of(1_000_000) {
            ledger.checkpoint()?;
        }
    }
    ledger.checkpoint()?;
    drop(ledger);
    let segments = dir.join("ledger/segments");
    println!(
        "  written in {:.1} s ({:.2} GB of segments)",
        started.elapsed().as_secs_f64(),
        dir_bytes(&segments)? as f64 / 1e9
    );
    let t = Instant::now();
    let report = tongchou_ledger::verify::verify(&dir.join("ledger"), &dir.join("config"), None)?;
    let ours = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.ok(), "{:?}", report.problems);
    anyhow::ensure!(report.entries == entries + 1);
    let t = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {}/*.seg | sha256sum > /dev/null",
            segments.display()
        ))
        .status()?;
    anyhow::ensure!(status.success());
    let floor = t.elapsed().as_secs_f64();
    println!(
        "  tongchou ledger verify: {ours:.1} s ({} checkpoints); sha256sum over the same segments: {floor:.1} s; ratio {:.2}",
        report.checkpoints,
        ours / floor
    );
    Ok(())
}
