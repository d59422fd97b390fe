//! Kernel-ready latency: cold start vs fork server, through nbpipe's own client.
//!
//! `cargo run --release -p nbpipe-kernel --example kernel_ready -- PYTHON N [PRELOAD...]`
//! starts N kernels of `PYTHON -m ipykernel_launcher` each way, one at a time, and times each
//! from the launch call to the reply of its first `execute_request` (the kernel accepted and
//! ran code). It also reports the zygote's start time and memory, and the private memory
//! (copy-on-write) of a forked kernel vs a cold one. Prints one JSON object on stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nbpipe_kernel::spec::KernelSpec;
use nbpipe_kernel::{Event, ForkServers, Kernel, LaunchOptions};
use serde_json::json;

/// (Rss, Pss, Private) in KiB from /proc/PID/smaps_rollup.
fn memory(pid: i32) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    json!({
        "rss_kib": field("Rss:"),
        "pss_kib": field("Pss:"),
        "private_kib": field("Private_Clean:") + field("Private_Dirty:"),
    })
}

async fn first_reply(k: &mut Kernel) {
    let id = k.execute("1").await.expect("execute");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match k.next_event_until(deadline).await.expect("kernel died") {
            Some(Event::Shell(m)) if m.parent_id == id => return,
            Some(_) => {}
            None => panic!("no execute_reply within 60 s"),
        }
    }
}

/// Ready times, shutdown times (request -> process gone), memory of the last kernel.
async fn measure(
    spec: &KernelSpec,
    opts: &LaunchOptions,
    n: usize,
) -> (Vec<f64>, Vec<f64>, serde_json::Value) {
    let mut times = Vec::new();
    let mut downs = Vec::new();
    let mut mem = serde_json::Value::Null;
    for i in 0..n {
        let t0 = Instant::now();
        let mut k = Kernel::launch(spec, opts).await.expect("launch");
        first_reply(&mut k).await;
        times.push(t0.elapsed().as_secs_f64());
        if i == n - 1 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            mem = memory(k.pid());
        }
        let t0 = Instant::now();
        k.shutdown().await;
        downs.push(t0.elapsed().as_secs_f64());
    }
    (times, downs, mem)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let python = PathBuf::from(
        args.next()
            .expect("usage: kernel_ready PYTHON N [PRELOAD...]"),
    );
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let preload: Vec<String> = args.collect();
    let spec = KernelSpec::for_python(&python);
    let cold = LaunchOptions::default();
    let forks = ForkServers::new().expect("runtime dir");
    let t0 = Instant::now();
    forks.enable("bench", &python, "bench", &preload);
    let fork = LaunchOptions {
        fork: Some(forks.clone()),
        ..LaunchOptions::default()
    };
    // The first forked launch waits for the zygote: that is its start-up cost.
    let mut k = Kernel::launch(&spec, &fork).await.expect("launch");
    first_reply(&mut k).await;
    let zygote_first = t0.elapsed().as_secs_f64();
    k.shutdown().await;
    let zygote = forks.zygote_pid(&python).await.expect("a zygote");
    let zygote_mem = memory(zygote);

    let (fork_times, fork_down, fork_mem) = measure(&spec, &fork, n).await;
    let (cold_times, cold_down, cold_mem) = measure(&spec, &cold, n.min(10)).await;
    println!(
        "{}",
        json!({
            "python": python,
            "preload": preload,
            "n_fork": fork_times.len(),
            "n_cold": cold_times.len(),
            "fork_s": fork_times,
            "cold_s": cold_times,
            "fork_shutdown_s": fork_down,
            "cold_shutdown_s": cold_down,
            "zygote_start_to_first_kernel_s": zygote_first,
            "zygote_memory": zygote_mem,
            "forked_kernel_memory": fork_mem,
            "cold_kernel_memory": cold_mem,
        })
    );
}
