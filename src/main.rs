//! The `kadswarm` command. Errors are printed as one line on stderr with the exit code the
//! command-line contract gives them: 1 when the work failed, 2 for bad input.

// As in the library: an error is a value and an exit code, never a panic.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use clap::Parser;
use kadswarm::cli::{
    crawl_cmd, demo_cmd, get_cmd, node_cmd, peers_cmd, seed_cmd, Cli, CliError, Command, EXIT_BAD_INPUT,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // One thread for the DHT commands: a DHT node is bound by packets, not cores, and this
    // keeps the other core free (the benches pin the node to one core). `get` and `seed` get
    // one async worker too: their bulk work (writing, hashing, reading the payload) runs on a
    // disk thread of its own, and a second worker only added hand-overs between threads (a
    // download from libtorrent took about 10% more CPU with two). `demo` runs a whole swarm
    // in this process, so it gets two.
    let built = match cli.command {
        Command::Demo(_) => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(),
        Command::Get(_) | Command::Seed(_) => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()
        }
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kadswarm: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let (verbose, quiet) = (cli.verbose, cli.quiet);
    let result: Result<(), CliError> = runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => node_cmd::run(args, verbose, quiet).await,
            Command::Peers(args) => peers_cmd::run(args, verbose, quiet).await,
            Command::Demo(args) => demo_cmd::run(args, verbose, quiet).await,
            Command::Crawl(args) => crawl_cmd::run(args, verbose, quiet).await,
            Command::Get(args) => get_cmd::run(args, verbose, quiet).await,
            Command::Seed(args) => seed_cmd::run(args, verbose, quiet).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError { code, error }) => {
            eprintln!("kadswarm: error: {error:#}");
            ExitCode::from(code)
        }
    }
}
