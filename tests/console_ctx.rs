//! End to end: `:ctx NAME` in the console opens a context of its kubeconfig that was not open.
//! The console runs in a pseudo-terminal with `--context alpha`, its kubeconfig naming two
//! contexts of one sandbox cluster in this process (each with a namespace of its own, so each
//! shows different workloads); `:ctx` with Tab then Enter opens the other.
//!
//! Nothing here needs Docker: the console's Docker target is a socket nothing listens on.

mod support;

use std::time::{Duration, Instant};

use pilothouse::sandbox::{Options, Sandbox};
use serde_json::{Value, json};
use support::pty::{Console, KillOnDrop};

fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [ { "name": name, "image": format!("sandbox/{name}:1.0") } ] }
            }
        }
    })
}

/// Two contexts of one cluster: `alpha` in namespace shop, `beta two` in namespace lab.
fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: sandbox\n  cluster:\n    server: {server:?}\n\
         contexts:\n\
         - name: alpha\n  context:\n    cluster: sandbox\n    user: sandbox\n    namespace: shop\n\
         - name: beta two\n  context:\n    cluster: sandbox\n    user: sandbox\n    namespace: lab\n\
         current-context: alpha\n\
         users:\n- name: sandbox\n  user: {{}}\n"
    )
}

/// The workload names on the table's rows.
fn rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .filter(|l| l.starts_with('│'))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("shop/") || w.starts_with("lab/"))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn ctx_opens_a_context_of_the_kubeconfig_that_was_not_open_and_shows_it_alone() {
    let started = Instant::now();
    let sandbox = Sandbox::spawn(Options {
        objects: vec![
            namespace("shop"),
            namespace("lab"),
            deployment("shop", "web"),
            deployment("lab", "api"),
        ],
        pod_start: Duration::from_millis(200),
        ..Options::default()
    })
    .expect("the sandbox starts");
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig(&sandbox.url())).unwrap();
    let socket = format!("unix://{}", files.path().join("no-engine.sock").display());
    let path = path.display().to_string();
    let mut console = KillOnDrop(Console::start(&[
        "--docker-host",
        &socket,
        "--kubeconfig",
        &path,
        "--context",
        "alpha",
    ]));

    // Only alpha is open: shop/web shows, lab/api does not.
    let screen = console.wait_until("shop/web", 15, |s| {
        rows(s).contains(&"shop/web".to_string())
    });
    assert!(screen.contains("alpha ●"), "{screen}");
    assert!(!screen.contains("beta two"), "{screen}");

    // A context in neither place: an error listing the kubeconfig's, and nothing opens.
    console.keys(":ctx nope\r");
    let screen = console.wait_for("no context named \"nope\"", 5);
    assert!(
        screen.contains("its contexts: \"alpha\", \"beta two\""),
        "{screen}"
    );
    assert_eq!(rows(&screen), ["shop/web"]);

    // Tab offers the context that is only in the kubeconfig; Enter opens it.
    console.keys(":ctx b\t");
    console.wait_for(":ctx beta two", 5);
    console.keys("\r");
    let screen = console.wait_until("lab/api alone", 15, |s| rows(s) == ["lab/api"]);
    assert!(screen.contains("opened context \"beta two\""), "{screen}");
    assert!(screen.contains("beta two ●"), "{screen}");

    // `:ctx` alone shows both contexts' workloads side by side.
    console.keys(":ctx\r");
    let screen = console.wait_until("both workloads", 5, |s| {
        let mut shown = rows(s);
        shown.sort();
        shown == ["lab/api", "shop/web"]
    });
    assert!(screen.contains("alpha ●"), "{screen}");

    console.quit_with("q");
    let took = started.elapsed();
    eprintln!("took {:.1}s", took.as_secs_f64());
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
