//! Tidy checks run as ordinary tests: the dependency direction server → diesel → core.

use std::path::Path;

/// The `[dependencies]` section (and target-specific ones) of a manifest, as text.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]"
                || (t.starts_with("[target.") && t.ends_with(".dependencies]"));
            continue;
        }
        if in_deps && !t.is_empty() && !t.starts_with('#') {
            if let Some((name, _)) = t.split_once('=') {
                deps.push(name.trim().to_string());
            }
        }
    }
    deps
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn core_depends_on_no_sql_http_or_async_crate() {
    let deps = dependencies(&root().join("ddms-core/Cargo.toml"));
    assert!(deps.contains(&"serde".to_string()), "parsed {deps:?}");
    for banned in [
        "diesel",
        "diesel_migrations",
        "r2d2",
        "hyper",
        "hyper-util",
        "tokio",
        "ddms-diesel",
        "ddms-server",
        "http-body-util",
    ] {
        assert!(
            !deps.iter().any(|d| d == banned),
            "ddms-core must not depend on {banned}"
        );
    }
}

#[test]
fn the_postgres_backend_knows_no_http() {
    let deps = dependencies(&root().join("ddms-diesel/Cargo.toml"));
    assert!(deps.contains(&"ddms-core".to_string()), "parsed {deps:?}");
    for banned in [
        "hyper",
        "hyper-util",
        "ddms-server",
        "http-body-util",
        "matchit",
        "jsonwebtoken",
    ] {
        assert!(
            !deps.iter().any(|d| d == banned),
            "ddms-diesel must not depend on {banned}"
        );
    }
}

#[test]
fn core_sources_do_not_mention_sql_or_http_crates() {
    for entry in walk(&root().join("ddms-core/src")) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for banned in ["use diesel", "diesel::", "use hyper", "hyper::", "tokio::"] {
            assert!(
                !text.contains(banned),
                "{} mentions {banned}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}
