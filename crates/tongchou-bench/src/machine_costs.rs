//! What this machine charges for the two things a durable ledger adds to a statement and an
//! unaudited server never does: waking a thread on another core (the committing thread and
//! the worker waiting for it wake each other) and flushing an append to the device. Printed
//! beside the auditing benches, so that an overhead can be read against its machine: on
//! this project's VM a wake-up across cores costs tens of microseconds, on one core about one.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::micros;

const ROUND_TRIPS: u32 = 20_000;
const FLUSHES: u32 = 500;
const APPEND: [u8; 1000] = [b'x'; 1000];

/// One wake-up there and one back, wall time and the process's CPU time.
struct RoundTrip {
    wall: Duration,
    cpu: Duration,
}

/// Prints the machine's costs, the flush measured in `dir`.
pub fn print(dir: &Path) -> Result<()> {
    let cores = allowed_cores()?;
    let one_core = round_trip((cores[0], cores[0]))?;
    let cross = cores
        .get(1)
        .map(|&other| round_trip((cores[0], other)))
        .transpose()?;
    let flush = append_and_flush(dir)?;
    let show = |r: &RoundTrip| format!("{:.1} µs ({:.1} µs of CPU)", micros(r.wall), micros(r.cpu));
    println!(
        "machine costs: a thread wakes another and is woken back — across two cores {}, on one core {}; a 1-KB append + fdatasync in {}: {:.0} µs",
        cross.as_ref().map_or("(one core only)".into(), show),
        show(&one_core),
        dir.display(),
        micros(flush)
    );
    Ok(())
}

/// Two threads pinned to `cores` take turns `ROUND_TRIPS` times, each parking until the other
/// unparks it (a futex, as the committing thread and a waiting worker do).
fn round_trip(cores: (usize, usize)) -> Result<RoundTrip> {
    let peers_turn = AtomicBool::new(false);
    let timer = OnceLock::<Thread>::new();
    let pinned = [AtomicBool::new(false), AtomicBool::new(false)];
    let both_pinned = Barrier::new(2);
    let both = |pinned: &[AtomicBool; 2]| pinned.iter().all(|p| p.load(Ordering::Acquire));
    std::thread::scope(|scope| {
        let peer = scope.spawn(|| {
            pinned[1].store(pin(cores.1).is_ok(), Ordering::Release);
            both_pinned.wait();
            if !both(&pinned) {
                return;
            }
            for _ in 0..ROUND_TRIPS {
                while !peers_turn.load(Ordering::Acquire) {
                    std::thread::park();
                }
                peers_turn.store(false, Ordering::Release);
                timer.get().expect("set before the first turn").unpark();
            }
        });
        let peer = peer.thread().clone();
        let (peers_turn, timer, pinned, both_pinned) = (&peers_turn, &timer, &pinned, &both_pinned);
        let timed = scope.spawn(move || {
            timer.get_or_init(std::thread::current);
            let mine = pin(cores.0);
            pinned[0].store(mine.is_ok(), Ordering::Release);
            both_pinned.wait();
            mine?;
            anyhow::ensure!(both(pinned), "cannot keep a thread on core {}", cores.1);
            let (wall, cpu) = (Instant::now(), process_cpu());
            for _ in 0..ROUND_TRIPS {
                peers_turn.store(true, Ordering::Release);
                peer.unpark();
                while peers_turn.load(Ordering::Acquire) {
                    std::thread::park();
                }
            }
            Ok(RoundTrip {
                wall: wall.elapsed() / ROUND_TRIPS,
                cpu: process_cpu().saturating_sub(cpu) / ROUND_TRIPS,
            })
        });
        timed.join().expect("the timing thread does not panic")
    })
}

/// The cores this process may run on, in order.
fn allowed_cores() -> Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is the empty set; the call fills it through a valid pointer.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot read the allowed cores");
        }
        set
    };
    let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads one bit of a valid set.
        .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
        .collect();
    anyhow::ensure!(!cores.is_empty(), "no core is allowed to this process");
    Ok(cores)
}

/// Keeps the calling thread on `core`.
fn pin(core: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; the call only reads it.
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if pinned != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot keep a thread on core {core}"));
    }
    Ok(())
}

fn process_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The mean time of appending 1 KB to a new file in `dir` and flushing it to the device.
fn append_and_flush(dir: &Path) -> Result<Duration> {
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let started = Instant::now();
    for _ in 0..FLUSHES {
        file.write_all(&APPEND)?;
        file.sync_data()?;
    }
    Ok(started.elapsed() / FLUSHES)
}
