//! The OpenAPI document tells the truth (issue 10): schemathesis (PyPI, installed by
//! scripts/install-deps.sh) generates requests from `/v1/openapi.json`, valid and invalid,
//! and runs every check against the real control API over HTTP: no server error, every
//! status code, content type, header and body as documented, schema-valid requests
//! accepted and schema-violating ones refused, deleted resources gone. A bounded run with
//! a fixed seed; `tests/schemathesis/schemathesis.toml` names the few rules between
//! fields a schema cannot state.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{ADMIN_KEY, harness_with};
use floodlight_control::ControlConfig;

/// schemathesis from the venv scripts/install-deps.sh makes (`FLOODLIGHT_SCHEMATHESIS`
/// overrides the path). Missing is a failure, not a skip.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("FLOODLIGHT_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("floodlight/schemathesis/venv/bin/schemathesis")
        });
    assert!(
        path.exists(),
        "schemathesis not found at {} (scripts/install-deps.sh installs it; \
         FLOODLIGHT_SCHEMATHESIS overrides the path)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_the_document_does_not_say() {
    let h = harness_with(ControlConfig {
        // The run sends many requests without a valid key on purpose (the
        // `ignored_auth` check); the throttle is tested in tests/api_auth.rs.
        api_key_failures_max: 1_000_000,
        ..ControlConfig::default()
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h
        .router
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/schemathesis/schemathesis.toml"
    );
    let binary = schemathesis();
    let url = format!("http://{addr}/v1/openapi.json");
    // schemathesis keeps a cache in its working directory: not in the source tree.
    let workdir = tempfile::tempdir().unwrap();
    let cwd = workdir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .current_dir(cwd)
            .args(["--config-file", config, "run", &url])
            .args(["--header", &format!("Authorization: Bearer {ADMIN_KEY}")])
            .args(["--checks", "all"])
            // The coverage phase of 4.32.5 crashes inside schemathesis on this document
            // (an AST recursion error in its own code), so it is left out.
            .args(["--phases", "examples,fuzzing,stateful"])
            .args([
                "--max-examples",
                "40",
                "--seed",
                "20261207",
                "--workers",
                "2",
            ])
            .args(["--no-color"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found a difference between the API and its document:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
