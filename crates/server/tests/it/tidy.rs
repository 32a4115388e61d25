//! Architecture invariants of docs/ARCHITECTURE.md, checked on the source tree.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `crates/*/src` and `bench/src`, without its unit-test module or
/// `tests.rs` file (tests may spell out paths and SQL on purpose).
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                // A unit-test module in a file of its own (`#[cfg(test)] mod tests;`).
                && path.file_name().is_none_or(|n| n != "tests.rs")
            {
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
        // domain's error-to-problem mapping (error.rs), the benchmark driver's extra routes, and
        // the test kit's fake servers.
        let allowed = p.ends_with("server/src/http.rs")
            || p.ends_with("server/src/listener.rs")
            || p.ends_with("server/src/lib.rs")
            || p.contains("server/src/gateway/conn/")
            || p.ends_with("routes.rs")
            || p.ends_with("error.rs")
            || p.starts_with("bench/")
            || p.ends_with("testkit/src/fakes.rs");
        if !allowed {
            assert!(
                !text.contains("axum::"),
                "{p} uses axum outside the HTTP layer"
            );
        }
    }
}

/// The string literals of Rust source `code`, comments left out (a rough lexer: enough for
/// this tree's strings, raw strings, byte strings and char literals).
fn string_literals(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            // A char literal ('"', '\'', 'x'); a lifetime has no closing quote.
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 3;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#')) && !in_word(b, i) => {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let rest = &code[open + 1..];
                let len = rest.find(&close).unwrap_or(rest.len());
                out.push(rest[..len].to_owned());
                i = open + 1 + len + close.len();
            }
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                out.push(code[start..i.min(b.len())].to_owned());
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether `b[i]` continues an identifier (`br"…"` starts a raw byte string, `for"` does not
/// exist).
fn in_word(b: &[u8], i: usize) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match i.checked_sub(1).map(|j| b[j]) {
        Some(b'b') => i >= 2 && word(b[i - 2]),
        Some(c) => word(c),
        None => false,
    }
}

#[test]
fn the_literal_scanner_finds_strings_and_skips_comments() {
    let code = r##"
        // "/.p2/in a comment"
        /* "/.p2/in a block" */
        let a = "one \" two"; let c = '"'; let l: &'a str = r#"raw "x""#;
        let d = '\''; format!("{base}v1/idcert/server");
    "##;
    assert_eq!(
        string_literals(code),
        ["one \\\" two", "raw \"x\"", "{base}v1/idcert/server"]
    );
}

/// Invariant 4: paths are written once, in `fugue_proto::api`. No string literal elsewhere
/// spells out a route, whole (`"/health"`) or in part (`"{base}/.p2/core/"`,
/// `"{api}v1/idcert/server"`): URLs are built from the declarations' targets.
#[test]
fn paths_are_written_once_in_proto_api() {
    let declared: Vec<&str> = fugue_proto::api::all().map(|e| e.path).collect();
    for (path, text) in sources() {
        if path.starts_with("crates/proto/src/api") {
            continue;
        }
        for literal in string_literals(&text) {
            // `/.p2` and `.p2/`, not `.p2` alone: the export format's file names
            // (`messages.p2mb`) have it too.
            let spells_a_path = ["/.p2", ".p2/", "/.well-known", "v1/"]
                .iter()
                .any(|part| literal.contains(part))
                || declared.contains(&literal.as_str());
            assert!(
                !spells_a_path,
                "{} writes a route path itself: {literal:?}",
                path.display()
            );
        }
    }
}

#[test]
fn the_server_library_reads_no_environment_and_no_files() {
    for (path, text) in sources() {
        // The one exception: resource bytes, under the directory the configuration names.
        if !path.starts_with("crates/server") || path.ends_with("src/media/objects/files.rs") {
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
