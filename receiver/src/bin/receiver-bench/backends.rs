//! redb and PostgreSQL side by side: the same push scenarios, one table.

use super::PushResult;

/// Prints each client count's durable pushes/s and latencies on both backends.
pub fn print_side_by_side(redb: &[(usize, PushResult)], postgres: &[(usize, PushResult)]) {
    println!("durable pushes, redb and PostgreSQL side by side (group commit on both)");
    println!(
        "{:>8} | {:>14} {:>8} {:>8} | {:>14} {:>8} {:>8} | {:>8}",
        "clients",
        "redb pushes/s",
        "p50 ms",
        "p99 ms",
        "pg pushes/s",
        "p50 ms",
        "p99 ms",
        "pg/redb"
    );
    println!("{}", "-".repeat(99));
    for ((clients, r), (_, p)) in redb.iter().zip(postgres) {
        println!(
            "{clients:>8} | {:>14.0} {:>8.2} {:>8.2} | {:>14.0} {:>8.2} {:>8.2} | {:>7.2}x",
            r.per_sec,
            r.p50_ms,
            r.p99_ms,
            p.per_sec,
            p.p50_ms,
            p.p99_ms,
            p.per_sec / r.per_sec.max(1e-9)
        );
    }
    println!();
    println!("PostgreSQL write transactions (averages, warm-up included)");
    for (clients, p) in postgres {
        println!(
            "{clients:>8} | batch {:>6.1}   commit {:>7.3} ms",
            p.avg_batch, p.avg_commit_ms
        );
    }
    println!();
}
