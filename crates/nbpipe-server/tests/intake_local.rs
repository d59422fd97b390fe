//! The local folder trigger end to end on a real directory: stability before emitting, ignored
//! names, durability across a restart, and "not recorded until queued".

use std::path::Path;
use std::time::Duration;

use nbpipe_server::event::Source;
use nbpipe_server::intake::local::{LocalDir, LocalDirOptions};
use nbpipe_server::intake::routing::{match_event, Route};
use nbpipe_server::intake::{
    CursorStore, Existing, FileCursorStore, IntakeError, MemoryCursorStore, MemorySink,
};

fn options() -> LocalDirOptions {
    LocalDirOptions {
        interval: Duration::from_millis(20),
        ..LocalDirOptions::default()
    }
}

fn write(root: &Path, key: &str, bytes: &[u8]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn keys(sink: &MemorySink) -> Vec<String> {
    let mut k: Vec<String> = sink.take().into_iter().map(|e| e.key).collect();
    k.sort();
    k
}

async fn poll(dir: &mut LocalDir, cursor: &dyn CursorStore, sink: &MemorySink) -> usize {
    dir.poll_once(cursor, sink).await.unwrap()
}

#[tokio::test]
async fn new_files_are_emitted_once_stable_with_relative_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("incoming");
    write(&root, "a.csv", b"a,b\n1,2\n");
    write(&root, "2024/05/b.csv", b"x\n");
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let mut dir = LocalDir::new(&root, options());

    // First sight: not yet known to be stable.
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 0);
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 2);
    let events = sink.take();
    let mut got: Vec<_> = events.iter().map(|e| e.key.as_str()).collect();
    got.sort();
    assert_eq!(got, ["2024/05/b.csv", "a.csv"]);
    let a = events.iter().find(|e| e.key == "a.csv").unwrap();
    assert_eq!(a.bucket, root.display().to_string());
    assert_eq!(a.source, Source::LocalDir);
    assert_eq!(a.size, Some(8));
    assert_eq!(a.etag.as_ref().map(String::len), Some(32));
    assert!(a.event_time.is_some());
    assert_eq!(a.uri(), format!("{}/a.csv", root.display()));

    // Nothing new: nothing emitted.
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 0);
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 0);

    // Routes for the folder use its path as the bucket.
    let routes = vec![Route::new("p", dir.bucket(), "2024/", Some(".csv"))];
    let b = events.iter().find(|e| e.key == "2024/05/b.csv").unwrap();
    assert_eq!(match_event(&routes, b).len(), 1);
    assert!(match_event(&routes, a).is_empty());
}

#[tokio::test]
async fn a_file_still_growing_is_not_emitted_until_its_size_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let mut dir = LocalDir::new(tmp.path(), options());

    write(tmp.path(), "big.csv", b"part one\n");
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 0);
    // Still being written between polls.
    write(tmp.path(), "big.csv", b"part one\npart two\n");
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 0);
    write(tmp.path(), "big.csv", b"part one\npart two\npart three\n");
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 0);
    // Unchanged across two polls: taken, complete.
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 1);
    let e = sink.take().remove(0);
    assert_eq!(e.size, Some(29));
}

#[tokio::test]
async fn dotfiles_temp_files_and_symlinks_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.csv", b"s");
    for key in [
        ".hidden.csv",
        ".git/config",
        "a.csv.part",
        "a.csv.tmp",
        "a.csv~",
        "dl.crdownload",
        "sub/.x",
    ] {
        write(tmp.path(), key, b"x");
    }
    write(tmp.path(), "real.csv", b"r");
    std::os::unix::fs::symlink(
        outside.path().join("secret.csv"),
        tmp.path().join("link.csv"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), tmp.path().join("linkdir")).unwrap();
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let mut dir = LocalDir::new(tmp.path(), options());
    poll(&mut dir, &cursor, &sink).await;
    poll(&mut dir, &cursor, &sink).await;
    assert_eq!(keys(&sink), ["real.csv"]);

    // Renamed from a temp name to its final name: picked up.
    std::fs::rename(tmp.path().join("a.csv.part"), tmp.path().join("a.csv")).unwrap();
    poll(&mut dir, &cursor, &sink).await;
    poll(&mut dir, &cursor, &sink).await;
    assert_eq!(keys(&sink), ["a.csv"]);
}

#[tokio::test]
async fn after_a_restart_seen_files_are_not_emitted_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("in");
    let cursors = FileCursorStore::new(tmp.path().join("cursors"));
    write(&root, "a.csv", b"1");
    write(&root, "b.csv", b"2");
    {
        let sink = MemorySink::new();
        let mut dir = LocalDir::new(&root, options());
        poll(&mut dir, &cursors, &sink).await;
        poll(&mut dir, &cursors, &sink).await;
        assert_eq!(keys(&sink), ["a.csv", "b.csv"]);
    }
    // While "down": one file changes, one is added, one is deleted.
    write(&root, "a.csv", b"1 changed");
    write(&root, "c.csv", b"3");
    std::fs::remove_file(root.join("b.csv")).unwrap();

    let sink = MemorySink::new();
    let mut dir = LocalDir::new(&root, options());
    poll(&mut dir, &cursors, &sink).await;
    poll(&mut dir, &cursors, &sink).await;
    assert_eq!(keys(&sink), ["a.csv", "c.csv"]);

    // Touched without a content change: same identity, no run.
    let f = std::fs::File::options()
        .write(true)
        .open(root.join("c.csv"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    poll(&mut dir, &cursors, &sink).await;
    poll(&mut dir, &cursors, &sink).await;
    assert!(keys(&sink).is_empty());

    // A deleted file created again is new.
    write(&root, "b.csv", b"2");
    poll(&mut dir, &cursors, &sink).await;
    poll(&mut dir, &cursors, &sink).await;
    assert_eq!(keys(&sink), ["b.csv"]);
}

#[tokio::test]
async fn events_refused_by_the_sink_come_again() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.csv", b"1");
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let mut dir = LocalDir::new(tmp.path(), options());
    poll(&mut dir, &cursor, &sink).await;
    sink.fail_next(1);
    let err = dir.poll_once(&cursor, &sink).await.unwrap_err();
    assert!(matches!(err, IntakeError::Sink(_)), "{err:?}");
    assert_eq!(cursor.get(&dir.cursor_name()).await.unwrap(), None);
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 1);
    assert_eq!(keys(&sink), ["a.csv"]);
}

#[tokio::test]
async fn existing_skip_takes_only_files_arriving_later() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "old.csv", b"1");
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let opts = LocalDirOptions {
        existing: Existing::Skip,
        ..options()
    };
    let mut dir = LocalDir::new(tmp.path(), opts.clone());
    poll(&mut dir, &cursor, &sink).await;
    write(tmp.path(), "new.csv", b"2");
    poll(&mut dir, &cursor, &sink).await;
    poll(&mut dir, &cursor, &sink).await;
    assert_eq!(keys(&sink), ["new.csv"]);
    // Skip applies to the first start only: a restart with a cursor takes files added meanwhile.
    write(tmp.path(), "later.csv", b"3");
    let mut dir = LocalDir::new(tmp.path(), opts);
    poll(&mut dir, &cursor, &sink).await;
    poll(&mut dir, &cursor, &sink).await;
    assert_eq!(keys(&sink), ["later.csv"]);
}

#[tokio::test]
async fn a_missing_folder_is_an_error_and_keeps_the_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("in");
    write(&root, "a.csv", b"1");
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let mut dir = LocalDir::new(&root, options());
    poll(&mut dir, &cursor, &sink).await;
    poll(&mut dir, &cursor, &sink).await;
    let saved = cursor.get(&dir.cursor_name()).await.unwrap();
    std::fs::rename(&root, tmp.path().join("away")).unwrap();
    let err = dir.poll_once(&cursor, &sink).await.unwrap_err();
    assert!(matches!(err, IntakeError::LocalDir { .. }), "{err}");
    assert_eq!(cursor.get(&dir.cursor_name()).await.unwrap(), saved);
    // Back (e.g. remounted): nothing is emitted again.
    std::fs::rename(tmp.path().join("away"), &root).unwrap();
    sink.take();
    poll(&mut dir, &cursor, &sink).await;
    poll(&mut dir, &cursor, &sink).await;
    assert!(keys(&sink).is_empty());
}

#[tokio::test]
async fn run_loop_emits_and_stops_on_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let dir = LocalDir::new(tmp.path(), options());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    write(tmp.path(), "x.csv", b"x");
    let watcher = async {
        let mut got = Vec::new();
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            got.extend(sink.take());
            if !got.is_empty() {
                break;
            }
        }
        let _ = stop.send(());
        got
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    let both = async {
        tokio::join!(
            dir.run(&cursor, &sink, shutdown, |e| panic!("{e}")),
            watcher
        )
    };
    let ((), got) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("the loop stops on shutdown");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key, "x.csv");
}

/// With OS file events (inotify here), a file whose writer closed it is complete: it is
/// emitted by the first poll after the close, not the second; a file still open for writing
/// is not taken until it is closed; a file renamed into place counts as complete too.
#[tokio::test]
async fn watched_files_are_emitted_once_their_writer_closes_them() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("incoming");
    std::fs::create_dir_all(&root).unwrap();
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let mut dir = LocalDir::new(&root, options());
    dir.watch().expect("inotify is available on this machine");
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 0);

    let settle = || tokio::time::sleep(Duration::from_millis(500));
    std::fs::create_dir_all(root.join("sub")).unwrap();
    settle().await; // a new sub-folder is watched once its creation is seen
    write(&root, "sub/closed.csv", b"done\n");
    let mut open = std::fs::File::create(root.join("open.csv")).unwrap();
    open.write_all(b"half").unwrap();
    open.flush().unwrap();
    std::fs::write(root.join("moved.csv.part"), b"renamed\n").unwrap();
    settle().await;
    // The temp name is ignored; its rename below completes it.
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 1);
    assert_eq!(keys(&sink), ["sub/closed.csv"]);

    std::fs::rename(root.join("moved.csv.part"), root.join("moved.csv")).unwrap();
    open.write_all(b" more\n").unwrap();
    drop(open);
    settle().await;
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 2);
    assert_eq!(keys(&sink), ["moved.csv", "open.csv"]);
    assert_eq!(poll(&mut dir, &cursor, &sink).await, 0);

    // Without watching, the same new file needs a second poll (size seen stable twice).
    let other = tmp.path().join("polled");
    let mut polled = LocalDir::new(&other, options());
    write(&other, "a.csv", b"x\n");
    assert_eq!(poll(&mut polled, &cursor, &sink).await, 0);
    assert_eq!(poll(&mut polled, &cursor, &sink).await, 1);
}

/// The run loop wakes on a file event: with a 30 s poll interval, a dropped file is emitted
/// well before the next poll.
#[tokio::test]
async fn the_run_loop_wakes_on_file_events() {
    let tmp = tempfile::tempdir().unwrap();
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let mut dir = LocalDir::new(
        tmp.path(),
        LocalDirOptions {
            interval: Duration::from_secs(30),
            ..LocalDirOptions::default()
        },
    );
    dir.watch().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dropper = async {
        tokio::time::sleep(Duration::from_millis(300)).await; // the first poll has run
        let t0 = std::time::Instant::now();
        write(tmp.path(), "x.csv", b"x");
        let mut got = Vec::new();
        while got.is_empty() && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            got.extend(sink.take());
        }
        let _ = stop.send(());
        (got, t0.elapsed())
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    let ((), (got, took)) = tokio::join!(
        dir.run(&cursor, &sink, shutdown, |e| panic!("{e}")),
        dropper
    );
    assert_eq!(got.len(), 1, "not emitted within 10 s");
    assert_eq!(got[0].key, "x.csv");
    assert!(took < Duration::from_secs(5), "took {took:?}: no wake-up");
}
