//! Annotation and argument templates: `{{ column }}`, `{{ value }}`,
//! `{{ labels.name }}`. Nothing else: no logic, so a template cannot fail at
//! evaluation time once it parsed.

use std::collections::BTreeMap;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// A column of the row (or `value`).
    Column(String),
    /// A label of the instance (row labels and the rule's labels).
    Label(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

impl Template {
    /// # Errors
    /// An unclosed `{{`, an empty or malformed placeholder.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template {s:?}: \"{{{{\" without a closing \"}}}}\""))?;
            let name = after[..close].trim();
            let ident = |n: &str| {
                !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !n.starts_with(|c: char| c.is_ascii_digit())
            };
            let part = match name.strip_prefix("labels.") {
                Some(l) if ident(l) => Part::Label(l.to_string()),
                None if ident(name) => Part::Column(name.to_string()),
                _ => {
                    return Err(format!(
                        "template {s:?}: placeholder {{{{ {name} }}}} must be a column name, \
                         `value`, or `labels.<name>`"
                    ));
                }
            };
            parts.push(part);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// Column names the template reads (to check them against the SQL's output).
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Column(c) => Some(c.as_str()),
            _ => None,
        })
    }

    /// Renders over a row's values (already text) and the instance's labels.
    /// A missing column or label renders as the empty string.
    pub fn render(
        &self,
        row: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Column(c) => out.push_str(row.get(c).map_or("", String::as_str)),
                Part::Label(l) => out.push_str(labels.get(l).map_or("", String::as_str)),
            }
        }
        out
    }
}

/// Renders `s` (already validated when the rule was loaded).
pub fn render(
    s: &str,
    row: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> String {
    match Template::parse(s) {
        Ok(t) => t.render(row, labels),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_columns_and_labels() {
        let t =
            Template::parse("disk {{ disk }} on {{hostname}} ({{ value }}%) {{ labels.severity }}")
                .unwrap();
        let row = BTreeMap::from([
            ("disk".to_string(), "sda".to_string()),
            ("hostname".to_string(), "h1".to_string()),
            ("value".to_string(), "93.5".to_string()),
        ]);
        let labels = BTreeMap::from([("severity".to_string(), "page".to_string())]);
        assert_eq!(t.render(&row, &labels), "disk sda on h1 (93.5%) page");
        assert_eq!(
            t.columns().collect::<Vec<_>>(),
            ["disk", "hostname", "value"]
        );
    }

    #[test]
    fn rejects_bad_placeholders() {
        assert!(Template::parse("{{ host").unwrap_err().contains("closing"));
        assert!(Template::parse("{{ }}").is_err());
        assert!(Template::parse("{{ a b }}").is_err());
        assert!(Template::parse("no placeholders").is_ok());
    }
}
