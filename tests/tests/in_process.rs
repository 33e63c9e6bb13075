//! Tests that drive the pipeline through the library in this process: live root changes
//! without a reload, and the kernel's exclusion of the daemon's own process (this one).
use std::time::Duration;

use fim_engine::daemon::WatchRoot;
use fim_tests::*;
use fim_userspace::{
    ebpf_source::EbpfSource,
    kernel_offsets::read_kernel_offsets,
    loader,
    record::SourceItem,
    strategy::{self, Strategy},
};
use tokio::sync::mpsc;

fn strategy_under_test() -> Strategy {
    let name = strategy();
    name.parse()
        .unwrap_or_else(|_| panic!("FIM_STRATEGY={name} names no strategy"))
}

async fn next_paths(
    events: &mut mpsc::Receiver<SourceItem>,
    wait: Duration,
) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(wait, events.recv()).await {
        if let SourceItem::Change(event) = item {
            seen.push((
                serde_json::to_value(event.op)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
                event.path.to_string_lossy().into_owned(),
            ));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_change_live_and_own_process_is_excluded() {
    require_root();
    let first = Scratch::new("live-a");
    let second = Scratch::new("live-b");
    let offsets =
        read_kernel_offsets(std::path::Path::new("/sys/kernel/btf/vmlinux")).expect("kernel BTF");
    let tracefs = strategy::tracefs_root().expect("tracefs");
    let loaded =
        loader::load(strategy_under_test(), &offsets, 1 << 20, tracefs).expect("load BPF programs");
    let (sender, mut events) = mpsc::channel(1024);
    let (source, _) = EbpfSource::start(loaded, vec![WatchRoot::recursive(&first.watched)], sender)
        .expect("start");

    // This process is the daemon: its own write is excluded in the kernel; a child's is not.
    let own = c(&first.watched.join("own"));
    assert_eq!(raw_write(&own, libc::O_WRONLY | libc::O_CREAT, b"x"), 0);
    let child_file = first.watched.join("child");
    let child = c(&child_file);
    in_child(|| raw_write(&child, libc::O_WRONLY | libc::O_CREAT, b"x"));
    let child_path = child_file.to_string_lossy().to_string();
    assert_eq!(
        next_paths(&mut events, Duration::from_millis(800)).await,
        vec![
            ("create".to_string(), child_path.clone()),
            ("write-closed".to_string(), child_path)
        ]
    );

    // Switch roots without reloading: the old root goes quiet, the new one reports.
    source
        .update_roots(vec![WatchRoot::recursive(&second.watched)])
        .await
        .expect("update roots");
    let (old, new) = (
        c(&first.watched.join("after")),
        c(&second.watched.join("after")),
    );
    in_child(|| {
        raw_write(&old, libc::O_WRONLY | libc::O_CREAT, b"x")
            + raw_write(&new, libc::O_WRONLY | libc::O_CREAT, b"x")
    });
    let new_path = second.watched.join("after").to_string_lossy().to_string();
    assert_eq!(
        next_paths(&mut events, Duration::from_millis(800)).await,
        vec![
            ("create".to_string(), new_path.clone()),
            ("write-closed".to_string(), new_path)
        ]
    );
    source.stop().await.expect("detach");
}
