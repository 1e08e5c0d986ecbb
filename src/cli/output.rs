//! What the client subcommands print: plain tables (comfy-table, no borders, easy to read
//! and to `grep`) for people, pretty JSON for `--json`.
//!
//! Rendering reads fields out of the API's JSON by name and shows `-` for absent ones, so a
//! field the daemon adds later never breaks the CLI.

use std::io::Write;

use comfy_table::{presets, Cell, ContentArrangement, Table};
use serde_json::Value;

/// Writes `text` (plus a newline) to stdout. A closed pipe (`herald … | head`) ends the
/// output quietly instead of panicking as `println!` would.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end_matches('\n'));
    let _ = out.flush();
}

/// Writes a note for people on stderr (kept off stdout so that pipes see only data).
pub fn note(text: &str) {
    eprintln!("{text}");
}

/// Pretty JSON on stdout.
pub fn emit_json(value: &Value) {
    emit(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// A table with the given column headers.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(Cell::new).collect::<Vec<_>>());
    table
}

/// A table as text: borderless, each line trimmed.
pub fn render_table(table: &Table) -> String {
    table
        .lines()
        .map(|line| line.trim().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One value as cell text: strings bare, string arrays comma-separated, `null` as `-`,
/// anything else as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            if items.is_empty() {
                "-".into()
            } else {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }
        Value::Object(map) if map.is_empty() => "-".into(),
        Value::Object(map) if map.values().all(Value::is_string) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// The first of `keys` present (and not null) in `object`, as cell text.
pub fn field(object: &Value, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| &object[*k])
        .find(|v| !v.is_null())
        .map(cell)
        .unwrap_or_else(|| "-".into())
}

/// The first of `keys` present in `object` as a string (ids: `webhook_id`, then `id`, …).
pub fn string_field(object: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| object[*k].as_str())
        .map(str::to_owned)
}

/// An object as a two-column `FIELD VALUE` table, in the API's field order, leaving out
/// `skip`.
pub fn details(object: &Value, skip: &[&str]) -> Table {
    let mut table = table(&["FIELD", "VALUE"]);
    if let Value::Object(map) = object {
        for (key, value) in map {
            if skip.contains(&key.as_str()) {
                continue;
            }
            table.add_row(vec![key.clone(), cell(value)]);
        }
    }
    table
}

/// The `results` array of a list answer.
pub fn results(page: &Value) -> &[Value] {
    page["results"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_read_like_prose() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a, b");
        assert_eq!(cell(&json!({"X-A": "***"})), "X-A: ***");
        assert_eq!(cell(&json!(20)), "20");
        assert_eq!(cell(&json!([{"a": 1}])), r#"[{"a":1}]"#);
    }

    #[test]
    fn fields_fall_back_in_order() {
        let v = json!({"id": "wh_1", "name": null});
        assert_eq!(field(&v, &["webhook_id", "id"]), "wh_1");
        assert_eq!(field(&v, &["name"]), "-");
        assert_eq!(
            string_field(&v, &["webhook_id", "id"]).as_deref(),
            Some("wh_1")
        );
    }

    #[test]
    fn tables_have_no_borders() {
        let mut t = table(&["A", "B"]);
        t.add_row(vec!["1", "two"]);
        let text = render_table(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with('A'), "{text}");
        assert!(
            lines[1].starts_with('1') && lines[1].ends_with("two"),
            "{text}"
        );
    }
}
