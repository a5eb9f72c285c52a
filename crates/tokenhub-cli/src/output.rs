//! `--output table|json`: a table for people (the fields that matter, from the answer), or the
//! API's JSON exactly as the hub sent it, for scripts.

use anyhow::Context;
use comfy_table::{presets, ContentArrangement, Table};
use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table (the fields that matter).
    #[default]
    Table,
    /// The hub's JSON answer, untouched.
    Json,
}

/// A row (of a record) or a column (of a list): its title and where its value is in the answer
/// (a JSON pointer, `""` for the whole value).
pub type Field = (&'static str, &'static str);

impl Output {
    /// One object: a field/value table, or the JSON.
    pub fn object(self, json: &str, fields: &[Field]) -> anyhow::Result<()> {
        if self == Output::Json {
            print_json(json);
            return Ok(());
        }
        let v = parse(json)?;
        let mut t = table();
        t.set_header(["field", "value"]);
        for (title, at) in fields {
            if let Some(x) = v.pointer(at).filter(|x| !x.is_null()) {
                t.add_row([title.to_string(), cell(x)]);
            }
        }
        println!("{t}");
        Ok(())
    }

    /// A list (the array at `at` in the answer): one row per item, or the JSON.
    pub fn list(self, json: &str, at: &str, columns: &[Field]) -> anyhow::Result<()> {
        if self == Output::Json {
            print_json(json);
            return Ok(());
        }
        let v = parse(json)?;
        let items = v.pointer(at).and_then(Value::as_array).cloned();
        let mut t = table();
        t.set_header(columns.iter().map(|(title, _)| *title));
        for item in items.unwrap_or_default() {
            t.add_row(
                columns
                    .iter()
                    .map(|(_, at)| item.pointer(at).map(cell).unwrap_or_default()),
            );
        }
        println!("{t}");
        Ok(())
    }

    /// A record made here (from an answer's parts): the table, or the answer's JSON.
    pub fn record(self, json: &str, rows: &[(&str, String)]) {
        if self == Output::Json {
            print_json(json);
            return;
        }
        let mut t = table();
        t.set_header(["field", "value"]);
        for (title, value) in rows {
            t.add_row([title.to_string(), value.clone()]);
        }
        println!("{t}");
    }

    /// A key made just now: the JSON as the hub sent it, or the key alone on stdout (for
    /// `$(…)`) and what it is on stderr.
    pub fn new_key(self, json: &str, what: &str) -> anyhow::Result<()> {
        if self == Output::Json {
            print_json(json);
            return Ok(());
        }
        let v = parse(json)?;
        let (Some(id), Some(key)) = (v["keyId"].as_str(), v["apiKey"].as_str()) else {
            anyhow::bail!("the hub's answer has no keyId and apiKey");
        };
        eprintln!("{what} {id} created; it is shown once, below:");
        println!("{key}");
        Ok(())
    }

    /// A page of a paged list (`{"items", "next"}`): its rows and, on stderr, how to get the
    /// next page; or the JSON.
    pub fn page(self, json: &str, columns: &[Field]) -> anyhow::Result<()> {
        self.list(json, "/items", columns)?;
        if self == Output::Table {
            if let Some(next) = parse(json)?["next"].as_str() {
                eprintln!("more: --cursor {next}");
            }
        }
        Ok(())
    }

    /// An answer with nothing to tabulate (a `204`, an action): the JSON, if any, or `message`.
    pub fn done(self, json: &str, message: &str) {
        match self {
            Output::Json => print_json(json),
            Output::Table => println!("{message}"),
        }
    }
}

fn print_json(json: &str) {
    if !json.trim().is_empty() {
        println!("{}", json.trim_end());
    }
}

fn parse(json: &str) -> anyhow::Result<Value> {
    serde_json::from_str(json).context("the hub's answer is not JSON")
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// A value as a table cell: text as it is, a list of plain values comma-separated, an object as
/// compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_are_plain() {
        assert_eq!(cell(&json!("a")), "a");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!(["x", "y"])), "x, y");
        assert_eq!(cell(&json!({"DEAD": 1})), r#"{"DEAD":1}"#);
        assert_eq!(cell(&Value::Null), "");
    }
}
