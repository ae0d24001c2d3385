//! `mindo-bulk`: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc: the daemon allocates many small, short-lived values (JSON, rows, messages) from
/// several threads, where it is markedly faster than the system allocator (bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cli = mindo_bulk::cli::Cli::parse_from(&args);
    if let Err(err) = mindo_bulk::cli::run(cli) {
        // An unsuccessful outcome (a send that finished PARTIAL, ...) may have its result on
        // stdout already, and has an exit status of its own.
        let outcome = err.downcast_ref::<mindo_bulk::cli::Unsuccessful>();
        if !outcome.is_some_and(|o| o.result_printed) && mindo_bulk::cli::wants_json(&args) {
            println!("{}", serde_json::json!({"error": format!("{err:#}")}));
        }
        eprintln!("error: {err:#}");
        std::process::exit(outcome.map_or(1, |o| o.code));
    }
}
