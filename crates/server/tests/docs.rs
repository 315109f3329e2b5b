//! The README and `docs/` stand on their own in a clone: they name no file outside the
//! repository, and every repository path they name exists.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README and every page under `docs/`.
fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut pages = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/ exists") {
        let path = entry.expect("a docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
}

/// Every `.rs` and `.md` file under `dir`, `target` left out.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                sources(&path, out);
            }
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "md" || e == "sh")
        {
            out.push(path);
        }
    }
}

#[test]
fn nothing_points_outside_the_repository() {
    let root = repo();
    let mut files = pages();
    for dir in ["crates", "bench", "fuzz", ".ci"] {
        sources(&root.join(dir), &mut files);
    }
    // Spelled in pieces, so that this file does not name them.
    let outside = [
        format!("../{}/", "shared"),
        format!("{}.md", "DESIGN"),
        format!("{}.md", "STYLE"),
    ];
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a text file");
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o.as_str())) {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "these lines point at files a clone does not have:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = repo();
    let mut missing = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("a page");
        // Paths in backticks and in Markdown links: `crates/core/src/link.rs`, (messengers.md).
        let quoted = text.split('`').skip(1).step_by(2);
        let linked = text.split("](").skip(1).filter_map(|s| s.split(')').next());
        for candidate in quoted.chain(linked) {
            let path = candidate.trim_end_matches(['/', '.', ',']);
            let in_repo = ["crates/", "docs/", "bench/", "fuzz/", ".ci/"]
                .iter()
                .any(|p| path.starts_with(p));
            let sibling = !path.contains('/') && path.ends_with(".md");
            if path.contains(['*', '<', ' ', '{']) || !(in_repo || sibling) {
                continue;
            }
            // A bare page name is the page's neighbour, or the repository's (`BENCHMARKS.md`).
            let beside = page.parent().expect("a folder").join(path);
            let found = root.join(path).exists() || (sibling && beside.exists());
            if !found {
                missing.push(format!("{}: {path}", page.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the docs name paths that do not exist:\n{}",
        missing.join("\n")
    );
}
