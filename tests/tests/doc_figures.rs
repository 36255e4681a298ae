//! Figures quoted in the README and the guides come from one generated place: the table
//! `scripts/bench` writes into docs/performance.md. A quoted figure is a link to that page
//! whose title names the bench row, `[**0.90 ms**](docs/performance.md "B2")`, and its text
//! must appear in that row; a bold figure that is not such a link fails too, so a new quote
//! cannot slip in unchecked. After a bench run, update the quotes this test names.

use std::path::{Path, PathBuf};

/// The measured cells (ours, the peer's, the ratio) of every row, by row id.
fn bench_rows(performance: &str) -> Vec<(String, String)> {
    let table = performance
        .split("<!-- bench:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- bench:end -->").next())
        .expect("docs/performance.md has the generated table");
    table
        .lines()
        .filter(|line| line.starts_with("| B"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let id = cells[0].trim_start_matches("| ").to_owned();
            (
                id,
                cells.get(2..5).map(|c| c.join(" | ")).unwrap_or_default(),
            )
        })
        .collect()
}

/// Every `[TEXT](…performance.md "ROW")` link: (text, row, line number).
fn quoted_figures(doc: &str) -> Vec<(String, String, usize)> {
    let mut quotes = Vec::new();
    for (number, line) in doc.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find('[') {
            rest = &rest[start + 1..];
            let Some(close) = rest.find("](") else { break };
            let text = &rest[..close];
            let target = &rest[close + 2..];
            let Some(end) = target.find(')') else { break };
            let link = &target[..end];
            if let Some((path, title)) = link.split_once(" \"")
                && path.ends_with("performance.md")
            {
                let row = title.trim_end_matches('"').to_owned();
                quotes.push((text.replace("**", ""), row, number + 1));
            }
            rest = &target[end..];
        }
    }
    quotes
}

/// Bold figures (`**12.3 ms**`) that are not the text of a link.
fn unlinked_bold_figures(doc: &str) -> Vec<(String, usize)> {
    let units = ["µs", "ms", "s", "MiB", "KiB", "KB", "MB", "bytes"];
    let mut found = Vec::new();
    for (number, line) in doc.lines().enumerate() {
        for (index, piece) in line.split("**").enumerate() {
            let is_bold = index % 2 == 1;
            let figure = piece.split_once(' ').is_some_and(|(value, unit)| {
                value.chars().next().is_some_and(|c| c.is_ascii_digit())
                    && value
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
                    && units.contains(&unit)
            });
            let linked = line.contains(&format!("[**{piece}**]("));
            if is_bold && figure && !linked {
                found.push((piece.to_owned(), number + 1));
            }
        }
    }
    found
}

fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut paths = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("a docs entry").path();
        if path.extension().is_some_and(|e| e == "md") && !path.ends_with("performance.md") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
}

#[test]
fn every_quoted_figure_is_what_the_bench_table_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let performance = std::fs::read_to_string(root.join("docs/performance.md")).unwrap();
    let rows = bench_rows(&performance);
    assert!(rows.len() > 20, "the bench table has its rows");
    let mut drifted = Vec::new();
    let mut quoted = 0;
    for path in documents() {
        let doc = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for (text, row, line) in quoted_figures(&doc) {
            quoted += 1;
            let cells: Vec<&str> = rows
                .iter()
                .filter(|(id, _)| *id == row)
                .map(|(_, cells)| cells.as_str())
                .collect();
            if !cells.iter().any(|cells| cells.contains(&text)) {
                drifted.push(format!(
                    "{name}:{line}: \"{text}\" is not in row {row}: {cells:?}"
                ));
            }
        }
        for (figure, line) in unlinked_bold_figures(&doc) {
            drifted.push(format!(
                "{name}:{line}: \"{figure}\" is quoted without naming its bench row \
                 ([**{figure}**](…performance.md \"B…\"))"
            ));
        }
    }
    assert!(
        quoted >= 10,
        "the README quotes its figures through the table"
    );
    assert!(
        drifted.is_empty(),
        "quoted figures drifted:\n{}",
        drifted.join("\n")
    );
}

#[test]
fn the_checker_finds_quotes_and_unlinked_figures() {
    let doc = "takes [**0.90 ms**](docs/performance.md \"B2\") and **3 ms** and [a](x.md)";
    assert_eq!(
        quoted_figures(doc),
        [("0.90 ms".to_owned(), "B2".to_owned(), 1)]
    );
    assert_eq!(unlinked_bold_figures(doc), [("3 ms".to_owned(), 1)]);
}
