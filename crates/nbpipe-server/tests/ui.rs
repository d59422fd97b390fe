//! The web UI in headless Chromium (Debian's `chromium`): the server on 127.0.0.1:0 with a few
//! runs in a real queue, pages screenshotted into `$CARGO_TARGET_DIR/test-artifacts/` and their
//! DOM asserted; a hostile report must not reach the UI page.
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`); without it the tests fail and say so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nbpipe_server::api::{self, AppState, ProjectInfo};
use nbpipe_server::event::{ObjectEvent, RunRequest, Source};
use nbpipe_server::policy::EffectivePolicy;
use nbpipe_server::queue::{Finish, Limits, Queue};
use serde_json::{json, Value};

fn chromium_path() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "Chromium not found at `{}`: the UI tests need Debian's `chromium` package \
         (`apt-get install chromium`) or `CHROMIUM=/path/to/chromium`",
        p.display()
    );
    p
}

/// Where screenshots are kept: `$CARGO_TARGET_DIR/test-artifacts/` (else `target/…`).
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // <target>/debug/deps/ui-<hash>
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().to_path_buf()
        });
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `extra` flags; returns stdout.
async fn chromium(url: &str, extra: &[String]) -> String {
    let bin = chromium_path();
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1300,1800",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra);
    // A page following a running run keeps its event stream open, and virtual time does not
    // advance while a fetch is pending: such pages get a wall-clock timeout instead.
    if !extra.iter().any(|a| a.starts_with("--timeout=")) {
        cmd.arg("--virtual-time-budget=3000");
    }
    cmd.arg(url)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium started");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn dump_dom(url: &str) -> String {
    chromium(url, &["--dump-dom".to_string()]).await
}

async fn screenshot(url: &str, name: &str) -> PathBuf {
    let png = artifacts().join(name);
    let _ = std::fs::remove_file(&png);
    chromium(url, &[format!("--screenshot={}", png.display())]).await;
    let bytes = std::fs::read(&png).expect("a screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    assert!(
        bytes.len() > 5_000,
        "{} is not blank ({} bytes)",
        png.display(),
        bytes.len()
    );
    png
}

const PNG_1PX: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn notebook(running: bool) -> Value {
    let last = if running {
        json!({"cell_type": "code", "execution_count": null, "metadata": {"papermill": {"status": "running"}},
               "source": "train(model)", "outputs": []})
    } else {
        json!({"cell_type": "code", "execution_count": 3, "metadata": {"papermill": {"status": "completed"}},
               "source": "train(model)", "outputs": [{"output_type": "stream", "name": "stdout", "text": "accuracy 0.93\n"}]})
    };
    json!({
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# Quarterly sales\nCleaned **12 rows**."},
            {"cell_type": "code", "execution_count": 1, "metadata": {"papermill": {"status": "completed"}},
             "source": "df.head()", "outputs": [
                {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                 "data": {"text/html": "<table id=\"t\"><tr><th>region</th><th>sales</th></tr><tr><td>north</td><td>42</td></tr></table>",
                          "text/plain": "region sales"}}]},
            {"cell_type": "code", "execution_count": 2, "metadata": {"papermill": {"status": "completed"}},
             "source": "plot()", "outputs": [
                {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG_1PX, "text/plain": "<Figure>"}}]},
            last
        ],
        "metadata": {"language_info": {"name": "python"}, "kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4, "nbformat_minor": 5
    })
}

const HOSTILE: &str = "<!DOCTYPE html><html><head><title>hostile</title></head><body><h1>Hostile report</h1>\
<script>\
var log = [];\
if (window !== top) {\
try { parent.document.title = 'PWNED'; } catch (e) {}\
try { top.document.body.innerHTML = '<h1>PWNED</h1>'; } catch (e) {}\
try { top.location = '/?project=PWNED'; } catch (e) {}\
}\
try { localStorage.setItem('nbpipe-token', 'x'); log.push('storage: open'); } catch (e) { log.push('storage: blocked'); }\
try { sessionStorage.getItem('nbpipe-token'); log.push('session: open'); } catch (e) { log.push('session: blocked'); }\
try { fetch('/api/runs', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({project: 'sales'})}); } catch (e) {}\
try { var x = new XMLHttpRequest(); x.open('POST', '/api/runs', false); x.setRequestHeader('Content-Type','application/json'); x.send('{\"project\":\"sales\"}'); log.push('xhr: ' + x.status); } catch (e) { log.push('xhr: blocked'); }\
var p = document.createElement('pre'); p.id = 'log'; p.textContent = log.join('\\n'); document.body.appendChild(p);\
</script></body></html>";

struct Server {
    base: String,
    queue: Queue,
    ids: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn request(project: &str, key: Option<&str>) -> RunRequest {
    let trigger = key.map(|k| ObjectEvent {
        bucket: "incoming".into(),
        key: k.into(),
        etag: Some("e1".into()),
        version_id: None,
        size: Some(10),
        sequencer: None,
        event_time: None,
        event_name: "ObjectCreated:Put".into(),
        source: Source::Webhook,
        region: None,
        report_id: None,
        path: None,
    });
    RunRequest {
        project: project.into(),
        reason: key
            .map(|k| format!("s3 {k}"))
            .unwrap_or_else(|| "api".into()),
        dedup_key: trigger.as_ref().map(ObjectEvent::dedup_key),
        trigger,
        parameters: json!({"region": "north"}),
    }
}

fn step(
    id: &str,
    status: &str,
    output: &Path,
    html: Option<&Path>,
    duration: Option<f64>,
) -> Value {
    json!({"id": id, "notebook": format!("{id}.ipynb"), "status": status, "needs": [], "attempts": 1,
           "parameters": {}, "duration": duration,
           "output": output.to_str(), "html": html.map(|h| h.to_str().unwrap())})
}

/// A server with four runs: [succeeded (clean + hostile steps), failed, running (live step),
/// queued].
async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let queue = Queue::open(dir.path().join("queue.sqlite").to_str().unwrap())
        .await
        .unwrap();
    let w = "ui-test";
    let lease = Duration::from_secs(600);
    let limits = Limits {
        global: 10,
        default_per_project: 10,
        ..Limits::default()
    };

    // 1. Succeeded, with a real rendered report and a hostile one.
    let nb = nbpipe_notebook::read(notebook(false).to_string().as_bytes()).unwrap();
    let html = nbpipe_render::render(
        &nb,
        &nbpipe_render::RenderOptions {
            no_mathjax: true,
            ..Default::default()
        },
    );
    std::fs::write(out.join("clean.html"), html).unwrap();
    std::fs::write(out.join("clean.ipynb"), notebook(false).to_string()).unwrap();
    std::fs::write(out.join("hostile.html"), HOSTILE).unwrap();
    let ok = queue
        .enqueue(&request("sales", Some("q1/<b>bold</b> report.csv")), 1)
        .await
        .unwrap();
    queue.claim(w, &limits, lease).await.unwrap().unwrap();
    let manifest = json!({"steps": [
        step("clean", "succeeded", &out.join("clean.ipynb"), Some(&out.join("clean.html")), Some(4.2)),
        step("hostile", "succeeded", &out.join("hostile.ipynb"), Some(&out.join("hostile.html")), Some(0.3)),
    ]});
    queue
        .finish(
            ok.run_id(),
            w,
            Finish::Succeeded {
                output: vec![],
                manifest,
            },
        )
        .await
        .unwrap();

    // 2. Failed.
    let failed = queue
        .enqueue(&request("sales", Some("q2/broken.csv")), 1)
        .await
        .unwrap();
    queue.claim(w, &limits, lease).await.unwrap().unwrap();
    let manifest = json!({"steps": [json!({"id": "clean", "notebook": "clean.ipynb", "status": "failed",
        "needs": [], "attempts": 1, "parameters": {}, "duration": 1.1,
        "error": "KeyError: 'region'"})]});
    queue
        .finish(
            failed.run_id(),
            w,
            Finish::Failed {
                error: "step `clean` failed: KeyError: 'region'".into(),
                output: vec![],
                manifest,
                retry: false,
            },
        )
        .await
        .unwrap();

    // 3. Running, its step half done.
    std::fs::write(out.join("train.ipynb"), notebook(true).to_string()).unwrap();
    let running = queue.enqueue(&request("models", None), 2).await.unwrap();
    queue.claim(w, &limits, lease).await.unwrap().unwrap();
    let manifest = json!({"steps": [
        step("train", "running", &out.join("train.ipynb"), None, None),
        json!({"id": "publish", "notebook": "publish.ipynb", "status": "pending", "needs": ["train"],
               "attempts": 0, "parameters": {}}),
    ]});
    queue
        .update_manifest(running.run_id(), w, &manifest)
        .await
        .unwrap();
    // It runs in a container: its handle names it and its image; its log was kept (no engine
    // answers in this test, so the page falls back to the stored `container.log`).
    std::fs::write(
        out.join("container.log"),
        "Run r of `models` → out/\n[train] running <step>\n",
    )
    .unwrap();
    let handle = json!({"executor": "docker", "run_id": running.run_id(), "attempt": 1,
        "id": format!("nbpipe-{}-1", running.run_id()), "output": out.display().to_string(),
        "image": "127.0.0.1:5000/demo/models@sha256:abc123"});
    queue
        .set_attempt_handle(running.run_id(), 1, &handle)
        .await
        .unwrap();

    // 4. Queued.
    let queued = queue
        .enqueue(&request("sales", Some("q3/next.csv")), 1)
        .await
        .unwrap();

    let projects = vec![
        ProjectInfo {
            name: "sales".into(),
            environment: None,
            dir: dir.path().join("sales"),
            triggers: vec!["s3 incoming/*.csv".into()],
            max_attempts: 1,
            policy: policy_of("notebooks: [a.ipynb]\n"),
            steps: vec![],
            source: None,
        },
        ProjectInfo {
            name: "models".into(),
            environment: None,
            dir: dir.path().join("models"),
            triggers: vec!["schedule 0 6 * * * (Europe/Paris)".into()],
            max_attempts: 2,
            policy: policy_of(
                "notebooks: [a.ipynb]\nserve: {concurrency: 2, retries: 1, retry_backoff: 90s, timeout: 2h}\n",
            ),
            steps: vec![],
            source: None,
        },
    ];
    let state = AppState {
        queue: queue.clone(),
        projects: projects.into(),
        git: None,
        token: None,
        hooks: Arc::new(|_| Box::pin(async { Ok(Default::default()) })),
        intake: Default::default(),
        allowed_hosts: vec![],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Server {
        base,
        queue,
        ids: [ok, failed, running, queued]
            .iter()
            .map(|e| e.run_id().to_string())
            .collect(),
        stop: Some(tx),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_shows_status_project_trigger_and_duration() {
    let s = server().await;
    let png = screenshot(&format!("{}/", s.base), "ui-runs.png").await;
    eprintln!("screenshot: {}", png.display());
    let dom = dump_dom(&format!("{}/", s.base)).await;
    for id in &s.ids {
        assert!(
            dom.contains(&format!("data-run-id=\"{id}\"")),
            "run {id} listed"
        );
    }
    for word in ["succeeded", "failed", "running", "queued"] {
        assert!(
            dom.contains(&format!("</span> {word}</span>")),
            "badge with the word `{word}`"
        );
    }
    assert!(dom.contains("s3://incoming/q2/broken.csv"), "trigger shown");
    assert!(
        dom.contains("<option value=\"sales\">sales</option>"),
        "project filter"
    );
    // Hostile text in a key is shown as text.
    assert!(dom.contains("&lt;b&gt;bold&lt;/b&gt;"), "key escaped");
    assert!(!dom.contains("<b>bold</b>"));
    // A duration like `4m 05s` / `0.0 s` / `12 ms` is shown for finished runs.
    assert!(
        dom.contains(" ms</td>") || dom.contains(" s</td>"),
        "durations shown"
    );

    // Filters.
    let dom = dump_dom(&format!("{}/?project=models&status=running", s.base)).await;
    assert!(dom.contains(&format!("data-run-id=\"{}\"", s.ids[2])));
    assert!(!dom.contains(&format!("data-run-id=\"{}\"", s.ids[0])));
    assert!(
        dom.contains("<option value=\"running\" selected=\"\">running</option>"),
        "{dom}"
    );

    let png = screenshot(&format!("{}/projects", s.base), "ui-projects.png").await;
    eprintln!("screenshot: {}", png.display());
    let dom = dump_dom(&format!("{}/projects", s.base)).await;
    assert!(dom.contains("schedule 0 6 * * * (Europe/Paris)"));
    assert!(dom.contains(">Run now</button>"));
    // Each project's run policy: set values as written, unset ones with their origin.
    let row = |project: &str| {
        let start = dom
            .find(&format!("<tr data-project=\"{project}\""))
            .unwrap_or_else(|| panic!("no row for {project}: {dom}"));
        let end = dom[start..].find("</tr>").unwrap() + start;
        dom[start..end].to_string()
    };
    let models = row("models");
    for shown in [
        "<dd data-policy=\"concurrency\">2</dd>",
        "<dd data-policy=\"retries\">1</dd>",
        "<dd data-policy=\"retry_backoff\">1m 30s</dd>",
        "<dd data-policy=\"timeout\">2h</dd>",
        "<dd data-policy=\"retry_backoff_max\">10m <span class=\"muted\">(default)</span></dd>",
    ] {
        assert!(models.contains(shown), "{shown} not in {models}");
    }
    let sales = row("sales");
    for shown in [
        "<dd data-policy=\"concurrency\">1 <span class=\"muted\">(server default, <code>--per-project</code>)</span></dd>",
        "<dd data-policy=\"retries\">0 <span class=\"muted\">(inherited from the steps' <code>retries</code>",
        "<dd data-policy=\"retry_backoff\">10s <span class=\"muted\">(default)</span></dd>",
        "<dd data-policy=\"timeout\">none <span class=\"muted\">(default)</span></dd>",
        "<dd data-policy=\"interrupted_retries\">1 <span class=\"muted\">(default)</span></dd>",
    ] {
        assert!(sales.contains(shown), "{shown} not in {sales}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_page_shows_steps_and_the_rendered_report() {
    let s = server().await;
    let url = format!("{}/runs/{}?step=clean", s.base, s.ids[0]);
    let png = screenshot(&url, "ui-run-succeeded.png").await;
    eprintln!("screenshot: {}", png.display());
    let dom = dump_dom(&url).await;
    assert!(
        dom.contains("<tr data-step=\"clean\" data-status=\"succeeded\""),
        "{dom}"
    );
    assert!(dom.contains("<tr data-step=\"hostile\""));
    assert!(dom.contains(&format!(
        "<iframe id=\"report\" sandbox=\"allow-scripts\" src=\"/runs/{}/steps/clean.html\"",
        s.ids[0]
    )));
    assert!(dom.contains(">Re-run</button>"));
    assert!(
        !dom.contains(">Cancel</button>"),
        "a finished run cannot be cancelled"
    );
    assert!(dom.contains("4.2 s"));

    // The report itself, opened directly (sandboxed by its CSP): the rendered notebook.
    let report = dump_dom(&format!("{}/runs/{}/steps/clean.html", s.base, s.ids[0])).await;
    assert!(report.contains("Quarterly sales"), "{report}");
    assert!(report.contains("accuracy 0.93"));
    assert!(
        report.contains("<iframe"),
        "HTML outputs in their own sandboxed frames"
    );

    // The failed run shows its error.
    let url = format!("{}/runs/{}", s.base, s.ids[1]);
    let png = screenshot(&url, "ui-run-failed.png").await;
    eprintln!("screenshot: {}", png.display());
    let dom = dump_dom(&url).await;
    assert!(dom.contains("KeyError: 'region'") || dom.contains("KeyError: &#39;region&#39;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_step_shows_cell_progress_and_a_live_report() {
    let s = server().await;
    let url = format!("{}/runs/{}", s.base, s.ids[2]);
    let live = ["--timeout=4000".to_string()];
    let png = artifacts().join("ui-run-live.png");
    chromium(
        &url,
        &[live[0].clone(), format!("--screenshot={}", png.display())],
    )
    .await;
    eprintln!("screenshot: {}", png.display());
    let dom = chromium(&url, &[live[0].clone(), "--dump-dom".to_string()]).await;
    assert!(dom.contains("cell 3 of 3"), "{dom}");
    assert!(dom.contains(">Cancel</button>"));
    assert!(dom.contains(&format!("src=\"/runs/{}/steps/train.html\"", s.ids[2])));
    // A container run: where it runs, the image, and its log (escaped).
    assert!(
        dom.contains(&format!("docker <code>nbpipe-{}-1</code>", s.ids[2])),
        "{dom}"
    );
    assert!(dom.contains("<code>127.0.0.1:5000/demo/models@sha256:abc123</code>"));
    assert!(dom.contains("id=\"container-log\""), "{dom}");
    assert!(dom.contains("[train] running &lt;step&gt;"), "{dom}");
    let report = dump_dom(&format!("{}/runs/{}/steps/train.html", s.base, s.ids[2])).await;
    assert!(report.contains("Quarterly sales"));
    assert!(report.contains("train(model)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_report_cannot_touch_the_ui() {
    let s = server().await;
    let before = s.queue.counts().await.unwrap();
    let url = format!("{}/runs/{}?step=hostile", s.base, s.ids[0]);
    let png = screenshot(&url, "ui-run-hostile.png").await;
    eprintln!("screenshot: {}", png.display());
    let dom = dump_dom(&url).await;
    assert!(
        dom.contains(&format!("<title>Run {} · nbpipe</title>", s.ids[0])),
        "title intact: {dom}"
    );
    assert!(!dom.contains("PWNED"), "the UI page was touched: {dom}");
    assert!(dom.contains("src=\"/runs/"), "still the run page");
    assert!(dom.contains("hostile.html"));

    // Opened directly it runs, but in an opaque origin: no storage, no API calls.
    let report = dump_dom(&format!("{}/runs/{}/steps/hostile.html", s.base, s.ids[0])).await;
    assert!(report.contains("Hostile report"), "{report}");
    for line in ["storage: blocked", "session: blocked", "xhr: blocked"] {
        assert!(report.contains(line), "`{line}` in {report}");
    }
    assert_eq!(
        s.queue.counts().await.unwrap(),
        before,
        "the report could not submit a run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_run_page_follows_the_run_to_its_end() {
    let s = server().await;
    let id = s.ids[2].clone();
    // A second listener over the same queue that tells when the page's event stream opened.
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel::<()>();
    let state = AppState {
        queue: s.queue.clone(),
        projects: vec![].into(),
        git: None,
        token: None,
        hooks: Arc::new(|_| Box::pin(async { Ok(Default::default()) })),
        intake: Default::default(),
        allowed_hosts: vec![],
    };
    // Headless Chromium dumps the DOM once the page has loaded, and its virtual time stands
    // still while the event stream is open: the report frame is answered late so that the
    // page is still loading when the run finishes (the page then reloads itself).
    let app = api::router(state).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let path = req.uri().path().to_string();
            if path.ends_with("/events") {
                let _ = opened_tx.send(());
            }
            async move {
                if path.ends_with("/steps/train.html") {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = format!("{base}/runs/{id}");
    let browser = tokio::spawn(async move {
        chromium(
            &url,
            &["--timeout=15000".to_string(), "--dump-dom".to_string()],
        )
        .await
    });
    tokio::time::timeout(Duration::from_secs(30), opened.recv())
        .await
        .expect("the page opened its event stream")
        .unwrap();
    // The page is showing the running run: finish it.
    let manifest = json!({"steps": [
        {"id": "train", "notebook": "train.ipynb", "status": "succeeded", "needs": [], "attempts": 1,
         "parameters": {}, "duration": 61.0},
        {"id": "publish", "notebook": "publish.ipynb", "status": "succeeded", "needs": ["train"],
         "attempts": 1, "parameters": {}, "duration": 2.0},
    ]});
    s.queue
        .finish(
            &id,
            "ui-test",
            Finish::Succeeded {
                output: vec![],
                manifest,
            },
        )
        .await
        .unwrap();
    let dom = browser.await.unwrap();
    assert!(
        dom.contains(&format!(
            "<section id=\"run\" data-run-id=\"{id}\" data-status=\"succeeded\">"
        )),
        "{dom}"
    );
    assert!(
        dom.contains("<tr data-step=\"publish\" data-status=\"succeeded\""),
        "{dom}"
    );
    assert!(
        dom.contains("1m 01s"),
        "final durations after the reload: {dom}"
    );
    assert!(!dom.contains(">Cancel</button>"));
}

/// The effective run policy of a project whose nbpipe.yaml is `yaml` (one notebook,
/// `a.ipynb`), on a server whose `--per-project` is 1.
fn policy_of(yaml: &str) -> EffectivePolicy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    let project = nbpipe_project::parse(dir.path(), "nbpipe.yaml", yaml).unwrap();
    nbpipe_server::policy::effective(&project, 1)
}
