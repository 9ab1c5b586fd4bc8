//! Prints the benchmark suite's table (see `boxoffice_loadgen::bench_table`) from the
//! records `scripts/bench.sh` wrote:
//!
//! ```sh
//! cargo run --release -p boxoffice-loadgen --example bench_table -- records.tsv
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: bench_table RECORDS.tsv");
        return ExitCode::from(2);
    };
    let records = match std::fs::read_to_string(&path) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    match boxoffice_loadgen::bench_table::parse(&records) {
        Ok(rows) => {
            print!("{}", boxoffice_loadgen::bench_table::render(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::from(1)
        }
    }
}
