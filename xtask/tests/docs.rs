//! The documentation against the tree, so it cannot drift:
//! - `docs/layout.md`: every top-level folder has a row in its "Folders" table, that table
//!   names no folder that is not there, and every path in the first column of any of its
//!   tables exists;
//! - the README stays a front door (at most 200 lines, the two commands) and links every
//!   page of `docs/`;
//! - every relative link in `docs/` and in every README leads to a file that exists, and to
//!   a heading of it when it names one.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The README's longest allowed length, in lines.
const README_MAX_LINES: usize = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The files git tracks or would add (new files that are not ignored), relative to the root;
/// `None` outside a git checkout.
fn git_files(root: &Path) -> Option<Vec<String>> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ])
        .current_dir(root)
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    Some(
        out.stdout
            .split(|b| *b == 0)
            .filter_map(|path| std::str::from_utf8(path).ok())
            .filter(|path| !path.is_empty())
            .map(String::from)
            .collect(),
    )
}

/// Top-level folders of the tree: those git tracks or would add, or, outside a git
/// checkout, those on disk. Dot-folders and `target` included; the caller decides which
/// need a row.
fn tree_folders(root: &Path) -> BTreeSet<String> {
    match git_files(root) {
        Some(files) => files
            .iter()
            .filter_map(|path| path.split_once('/'))
            .map(|(first, _)| first.to_string())
            .collect(),
        None => fs::read_dir(root)
            .expect("reading the workspace root")
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect(),
    }
}

/// Whether a top-level folder needs a row in the layout's folder table.
fn needs_a_row(folder: &str) -> bool {
    !folder.starts_with('.') && folder != "target"
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(md: &str) -> Vec<&str> {
    let mut fenced = false;
    md.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The cells of a table row, split on `|` that is not escaped as `\|`.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter()
        .map(|cell| cell.trim().to_string())
        .collect()
}

/// The text inside each code span (`like this`) of a piece of Markdown.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// One table: the heading it sits under and the first cell of each body row.
struct Table {
    heading: String,
    first_cells: Vec<String>,
}

/// Every table of a Markdown text (outside code blocks), with the heading above it.
fn tables(md: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut rows: Vec<&str> = Vec::new();
    let mut finish = |rows: &mut Vec<&str>, heading: &str| {
        // A header row and its separator, then the body.
        if rows.len() >= 2 {
            out.push(Table {
                heading: heading.to_string(),
                first_cells: rows[2..].iter().map(|row| cells(row)[0].clone()).collect(),
            });
        }
        rows.clear();
    };
    for line in prose_lines(md) {
        if line.trim_start().starts_with('|') {
            rows.push(line);
            continue;
        }
        finish(&mut rows, &heading);
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
        }
    }
    finish(&mut rows, &heading);
    out
}

/// What is wrong with a layout page against the tree: `folders` are the tree's top-level
/// folders, `exists` says whether a path relative to the root exists. Empty when it fits.
fn layout_problems(
    md: &str,
    folders: &BTreeSet<String>,
    exists: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let tables = tables(md);
    let Some(folder_table) = tables.iter().find(|t| t.heading == "Folders") else {
        return vec!["no table under a heading \"Folders\"".to_string()];
    };
    let mut rows = BTreeSet::new();
    for cell in &folder_table.first_cells {
        match code_spans(cell).as_slice() {
            [name] if name.ends_with('/') && !name[..name.len() - 1].contains('/') => {
                if !rows.insert(name.trim_end_matches('/').to_string()) {
                    problems.push(format!("the folder table has `{name}` twice"));
                }
            }
            _ => problems.push(format!(
                "a row of the folder table is not one top-level folder as `name/`: {cell}"
            )),
        }
    }
    for folder in folders.iter().filter(|f| needs_a_row(f)) {
        if !rows.contains(folder) {
            problems.push(format!(
                "the folder `{folder}/` has no row in the folder table"
            ));
        }
    }
    for row in &rows {
        if !folders.contains(row) {
            problems.push(format!(
                "the folder table names `{row}/`, which is not in the tree"
            ));
        }
    }
    for table in &tables {
        for cell in &table.first_cells {
            for path in code_spans(cell) {
                if !exists(path) {
                    problems.push(format!(
                        "the table under \"{}\" names `{path}`, which does not exist",
                        table.heading
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn the_layout_names_every_top_level_folder_and_only_those() {
    let root = root();
    let md = read(&root.join("docs/layout.md"));
    let problems = layout_problems(&md, &tree_folders(&root), |path| root.join(path).exists());
    assert!(
        problems.is_empty(),
        "docs/layout.md does not fit the tree:\n  {}",
        problems.join("\n  ")
    );
}

/// The layout check itself: a folder added without a row, a row whose folder is gone, and a
/// detail path that is gone are all reported.
#[test]
fn the_layout_check_finds_a_missing_row_a_stale_row_and_a_stale_path() {
    let md = "# Layout\n\n## Folders\n\n| folder | what |\n|---|---|\n\
              | `a/` | A |\n| `gone/` | was here |\n| `.ci/` | CI |\n\n\
              ## a\n\n| path | what |\n|---|---|\n| `a/src/x.rs`, `a/src/y.rs` | files |\n";
    let folders: BTreeSet<String> = ["a", "new", ".ci", "target", ".cargo"]
        .into_iter()
        .map(String::from)
        .collect();
    let exists = |path: &str| path != "a/src/y.rs" && !path.starts_with("gone");
    let problems = layout_problems(md, &folders, exists);
    assert_eq!(
        problems,
        [
            "the folder `new/` has no row in the folder table",
            "the folder table names `gone/`, which is not in the tree",
            "the table under \"Folders\" names `gone/`, which does not exist",
            "the table under \"a\" names `a/src/y.rs`, which does not exist",
        ],
    );
    let fitting = md
        .replace("| `gone/` | was here |\n", "| `new/` | new |\n")
        .replace(", `a/src/y.rs`", "");
    assert_eq!(
        layout_problems(&fitting, &folders, exists),
        Vec::<String>::new()
    );
}

#[test]
fn the_readme_is_a_front_door_that_links_every_docs_page() {
    let root = root();
    let readme = read(&root.join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, at most {README_MAX_LINES}: move the detail to docs/"
    );
    assert!(
        readme.contains("## Two commands")
            && readme.contains("cargo xtask demo")
            && readme.contains("cargo xtask test"),
        "README.md must keep its \"Two commands\" section"
    );
    let mut unlinked = Vec::new();
    for entry in fs::read_dir(root.join("docs")).expect("reading docs/") {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") && !readme.contains(&format!("](docs/{name})")) {
            unlinked.push(name);
        }
    }
    unlinked.sort();
    assert!(
        unlinked.is_empty(),
        "README.md links no page docs/{unlinked:?}"
    );
}

/// GitHub's anchor for a heading: lower case, links reduced to their text, punctuation
/// dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` -> `text`
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings, a repeated one numbered as GitHub does.
fn anchors(md: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in prose_lines(md) {
        if !line.starts_with('#') {
            continue;
        }
        let base = slug(line.trim_start_matches('#').trim());
        let mut anchor = base.clone();
        let mut n = 0;
        while !out.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    out
}

/// The targets of the inline links and images of a Markdown text, outside code.
fn link_targets(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(md) {
        // Drop code spans, whose brackets are not links.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn links_in_docs_and_readmes_lead_somewhere() {
    let root = root();
    // The pages of docs/ and every README (outside git: the top-level one).
    let mut pages: BTreeSet<PathBuf> = [root.join("README.md")].into();
    for entry in fs::read_dir(root.join("docs")).expect("reading docs/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.insert(path);
        }
    }
    for file in git_files(&root).unwrap_or_default() {
        if file == "README.md" || file.ends_with("/README.md") {
            pages.insert(root.join(file));
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let md = read(page);
        for target in link_targets(&md) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            let name = page.strip_prefix(&root).unwrap().display();
            if !file.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
                continue;
            }
            let is_markdown = file.extension().is_some_and(|e| e == "md");
            if let Some(anchor) = anchor.filter(|_| is_markdown) {
                if !anchors(&read(&file)).contains(anchor) {
                    broken.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        slug("GET /api/v1/jobs — the job list (read token)"),
        "get-apiv1jobs--the-job-list-read-token"
    );
    assert_eq!(
        slug("Is it better? The backtest"),
        "is-it-better-the-backtest"
    );
    assert_eq!(slug("`cargo xtask demo`"), "cargo-xtask-demo");
    assert_eq!(
        anchors("# A\n```\n# not a heading\n```\n## A\n"),
        ["a", "a-1"].into_iter().map(String::from).collect()
    );
}
