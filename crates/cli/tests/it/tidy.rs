//! Architecture invariants of docs/ARCHITECTURE.md, checked on the source tree.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `crates/*/src` and `bench/src`, without its unit-test module (tests
/// may spell out paths and SQL on purpose).
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = workspace();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            walk(&src, &mut files);
        }
    }
    walk(&root.join("bench/src"), &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_owned();
            (p.strip_prefix(&root).unwrap().to_path_buf(), code)
        })
        .collect()
}

#[test]
fn proto_does_no_io_and_has_no_async_runtime() {
    let manifest = std::fs::read_to_string(workspace().join("crates/proto/Cargo.toml")).unwrap();
    let deps = manifest.split("[dev-dependencies]").next().unwrap();
    for forbidden in ["tokio", "axum", "reqwest", "sqlx", "rusqlite"] {
        assert!(
            !deps.contains(forbidden),
            "fugue-proto depends on {forbidden}"
        );
    }
}

#[test]
fn only_the_store_speaks_sql() {
    for (path, text) in sources() {
        if path.starts_with("crates/store") {
            continue;
        }
        for sql in [
            "SELECT ",
            "INSERT INTO",
            "DELETE FROM",
            "UPDATE ",
            "CREATE TABLE",
        ] {
            assert!(
                !text.contains(&format!("\"{sql}")),
                "{} contains SQL ({sql})",
                path.display()
            );
        }
    }
}

#[test]
fn only_the_http_layer_knows_axum() {
    for (path, text) in sources() {
        let p = path.to_string_lossy();
        // Routes, the HTTP edge and its accept loop, the gateway's WebSocket task, each
        // domain's error-to-problem mapping (error.rs), and the benchmark driver's extra routes.
        let allowed = p.ends_with("server/src/http.rs")
            || p.ends_with("server/src/listener.rs")
            || p.ends_with("server/src/lib.rs")
            || p.contains("server/src/gateway/conn/")
            || p.ends_with("routes.rs")
            || p.ends_with("error.rs")
            || p.starts_with("bench/");
        if !allowed {
            assert!(
                !text.contains("axum::"),
                "{p} uses axum outside the HTTP layer"
            );
        }
    }
}

#[test]
fn paths_are_written_once_in_proto_api() {
    for (path, text) in sources() {
        if path.starts_with("crates/proto/src/api.rs") {
            continue;
        }
        assert!(
            !text.contains("\"/.p2/"),
            "{} writes a route path itself",
            path.display()
        );
        assert!(
            !text.contains("\"/.well-known"),
            "{} writes a route path itself",
            path.display()
        );
    }
}

#[test]
fn the_server_library_reads_no_environment_and_no_files() {
    for (path, text) in sources() {
        if !path.starts_with("crates/server") {
            continue;
        }
        for forbidden in ["std::env::var", "std::fs::", "fs::read"] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                path.display()
            );
        }
    }
}

#[test]
fn the_server_writes_gateway_payloads_through_proto_types() {
    for (path, text) in sources() {
        let p = path.to_string_lossy();
        if p.starts_with("crates/server/") {
            assert!(
                !text.contains("json!"),
                "{p} builds a payload with json!; use the fugue_proto::gateway type"
            );
        }
    }
}
