//! The load bench: `cargo bench --bench load -- <scenario> [--quick] [--json PATH]
//! [--plot DIR]`.
//!
//! Scenarios: engine, transport, e2e, latency, publish, payload, fanout, scale, isolation,
//! backlog, cluster, all. Each starts what it needs (an HTTPS receiver in a child process,
//! a SecantusDB, herald on its own runtime or, for cluster, as `herald serve` child
//! processes), measures herald and, in the same run, the ceiling it is compared with, and
//! prints a summary table. See BENCHMARKS.md for the method and the latest figures.

mod harness;
mod plot;
mod receiver;
mod samples;
mod scenarios;

use std::path::PathBuf;

use clap::Parser;

/// The daemon's allocator (see `src/main.rs`), so that the figures are the daemon's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "herald load benchmarks")]
struct Args {
    /// engine | transport | e2e | latency | publish | payload | fanout | scale | isolation | backlog | cluster | all
    #[arg(default_value = "all")]
    scenario: String,
    /// Smaller counts: the whole suite in a few minutes.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write SVG charts here: each run's throughput over time beside its scenario's
    /// ceilings, and the latency distribution against the bare change stream's.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Internal: run as the receiver process with the TLS material in DIR.
    #[arg(long, hide = true)]
    receiver: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    // As the daemon's binary does, for herald, the bare client and the receiver alike.
    let _ = herald::memory::no_transparent_huge_pages();
    let args = Args::parse();
    if let Some(dir) = args.receiver {
        receiver::run(&dir);
        return;
    }
    // HERALD_LOG=… shows herald's own log (to stderr), as the daemon's flag of that name.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tls = tempfile::tempdir().unwrap();
        receiver::generate_tls(tls.path());
        let ctx = scenarios::Ctx {
            quick: args.quick,
            receiver: harness::ReceiverProcess::start(tls.path()),
        };
        let all = [
            "engine",
            "transport",
            "isolation",
            "e2e",
            "latency",
            "publish",
            "payload",
            "fanout",
            "scale",
            "backlog",
            "cluster",
        ];
        let chosen: Vec<&str> = if args.scenario == "all" {
            all.to_vec()
        } else if all.contains(&args.scenario.as_str()) {
            vec![args.scenario.as_str()]
        } else {
            eprintln!(
                "unknown scenario {:?}; one of {} or all",
                args.scenario,
                all.join(", ")
            );
            std::process::exit(2);
        };
        let mut outcomes = Vec::new();
        for scenario in chosen {
            eprintln!("== {scenario}");
            let results = match scenario {
                "engine" => scenarios::engine(&ctx).await,
                "isolation" => scenarios::isolation(&ctx).await,
                "e2e" => scenarios::e2e(&ctx).await,
                "latency" => scenarios::latency(&ctx).await,
                "publish" => scenarios::publish(&ctx).await,
                "payload" => scenarios::payload(&ctx).await,
                "fanout" => scenarios::fanout(&ctx).await,
                "scale" => scenarios::scale(&ctx).await,
                "backlog" => scenarios::backlog(&ctx).await,
                "cluster" => scenarios::cluster(&ctx).await,
                "transport" => scenarios::transport_alone(&ctx).await,
                _ => unreachable!(),
            };
            harness::print_table(&results);
            if let Some(dir) = &args.plot {
                match plot::write(dir, scenario, &results) {
                    Ok(files) => files
                        .iter()
                        .for_each(|f| eprintln!("chart written to {}", f.display())),
                    Err(e) => eprintln!("charts for {scenario} not written: {e}"),
                }
            }
            outcomes.extend(results);
        }
        println!("\nSummary ({}):", if args.quick { "quick" } else { "full" });
        harness::print_table(&outcomes);
        if let Some(path) = args.json {
            std::fs::write(&path, serde_json::to_string_pretty(&outcomes).unwrap()).unwrap();
            println!("results written to {}", path.display());
        }
    });
}
