//! `mindo-bulk`: parse the command line and hand over to the library.

use clap::Parser;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cli = mindo_bulk::cli::Cli::parse_from(&args);
    if let Err(err) = mindo_bulk::cli::run(cli) {
        if mindo_bulk::cli::wants_json(&args) {
            println!("{}", serde_json::json!({"error": format!("{err:#}")}));
        }
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
