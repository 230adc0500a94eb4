//! Table schemas: tag columns, typed field columns and `time`.
//!
//! # Invariants
//! - `time` is always present, `Timestamp(Nanosecond, "UTC")`, never null.
//! - A column name is unique in a table; a field keeps the type it was first
//!   written with ([`TableSchema::merge_column`] refuses any other).
//! - The Arrow schema orders columns as: tags sorted by name, fields in
//!   creation order, then `time`. The series sort key is the tags sorted by
//!   name, then `time`: adding a tag column never breaks the sort order of
//!   existing data, because an absent tag reads as NULL in every old row.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Name of the timestamp column of every table.
pub const TIME_COLUMN: &str = "time";

/// The type of a field column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Float,
    Integer,
    UInteger,
    Boolean,
    String,
}

impl FieldType {
    pub fn data_type(self) -> DataType {
        match self {
            FieldType::Float => DataType::Float64,
            FieldType::Integer => DataType::Int64,
            FieldType::UInteger => DataType::UInt64,
            FieldType::Boolean => DataType::Boolean,
            FieldType::String => DataType::Utf8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::UInteger => "unsigned integer",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
        }
    }
}

/// What a column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "type")]
pub enum ColumnKind {
    Tag,
    Field(FieldType),
    Time,
}

impl ColumnKind {
    pub fn describe(self) -> String {
        match self {
            ColumnKind::Tag => "tag".to_string(),
            ColumnKind::Field(t) => format!("{} field", t.name()),
            ColumnKind::Time => "time column".to_string(),
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            ColumnKind::Tag => tag_data_type(),
            ColumnKind::Field(t) => t.data_type(),
            ColumnKind::Time => time_data_type(),
        }
    }
}

pub fn tag_data_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

pub fn time_data_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(flatten)]
    pub kind: ColumnKind,
}

/// The schema of one table. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Columns in creation order; `time` is implicit and not listed.
    columns: Vec<ColumnDef>,
    /// Leading tags of the order data files sort rows by, fixed at the first
    /// flush (highest cardinality first). See [`TableSchema::series_order`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sort_key: Vec<String>,
}

impl Default for TableSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl TableSchema {
    pub fn new() -> Self {
        Self {
            columns: Vec::new(),
            sort_key: Vec::new(),
        }
    }

    /// Columns in creation order, without `time`.
    pub fn columns(&self) -> &[ColumnDef] {
        &self.columns
    }

    pub fn kind_of(&self, name: &str) -> Option<ColumnKind> {
        if name == TIME_COLUMN {
            return Some(ColumnKind::Time);
        }
        self.columns.iter().find(|c| c.name == name).map(|c| c.kind)
    }

    /// Adds `name` as `kind`, or checks that it already is one.
    /// Returns `true` when the column is new.
    ///
    /// # Errors
    /// [`Error::ColumnTypeConflict`] when the column exists with another kind.
    pub fn merge_column(&mut self, table: &str, name: &str, kind: ColumnKind) -> Result<bool> {
        match self.kind_of(name) {
            Some(existing) if existing == kind => Ok(false),
            Some(existing) => Err(Error::ColumnTypeConflict {
                table: table.to_string(),
                column: name.to_string(),
                existing: existing.describe(),
                requested: kind.describe(),
            }),
            None => {
                self.columns.push(ColumnDef {
                    name: name.to_string(),
                    kind,
                });
                Ok(true)
            }
        }
    }

    /// Tag names sorted by name: the series key order.
    pub fn tags_sorted(&self) -> Vec<&str> {
        let mut tags: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Tag)
            .map(|c| c.name.as_str())
            .collect();
        tags.sort_unstable();
        tags
    }

    pub fn sort_key(&self) -> &[String] {
        &self.sort_key
    }

    /// Fixes the sort key unless one is set (the first flush wins).
    pub fn set_sort_key(&mut self, tags: &[String]) {
        if self.sort_key.is_empty() {
            self.sort_key = tags.to_vec();
        }
    }

    /// The tag order data files sort rows by: the sort key, then every tag
    /// added since, by name. A tag added later is NULL in older files, so an
    /// older file's order is this order restricted to its tags: files of one
    /// table always merge without re-sorting.
    pub fn series_order(&self) -> Vec<&str> {
        let mut order: Vec<&str> = self
            .sort_key
            .iter()
            .map(String::as_str)
            .filter(|t| self.kind_of(t) == Some(ColumnKind::Tag))
            .collect();
        let mut rest: Vec<&str> = self
            .tags_sorted()
            .into_iter()
            .filter(|t| !order.contains(t))
            .collect();
        order.append(&mut rest);
        order
    }

    pub fn fields(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Field(_)))
    }

    /// The Arrow schema: tags sorted by name, fields in creation order, `time`.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .tags_sorted()
            .into_iter()
            .map(|t| Field::new(t, tag_data_type(), true))
            .collect();
        fields.extend(
            self.fields()
                .map(|c| Field::new(&c.name, c.kind.data_type(), true)),
        );
        fields.push(Field::new(TIME_COLUMN, time_data_type(), false));
        Arc::new(Schema::new(fields))
    }
}

/// Checks a database or table name for use as a path segment and SQL identifier.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    if name.starts_with('_') || name.starts_with('.') {
        return bad("names starting with '_' or '.' are reserved");
    }
    if name.contains(['/', '\\', '\0']) || name.chars().any(|c| c.is_control()) {
        return bad("contains '/', '\\' or a control character");
    }
    if name == "system" || name == "information_schema" {
        return bad("reserved schema name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_schema_orders_tags_fields_time() {
        let mut s = TableSchema::new();
        s.merge_column("cpu", "zone", ColumnKind::Tag).unwrap();
        s.merge_column("cpu", "usage", ColumnKind::Field(FieldType::Float))
            .unwrap();
        s.merge_column("cpu", "host", ColumnKind::Tag).unwrap();
        let schema = s.arrow_schema();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["host", "zone", "usage", "time"]);
    }

    #[test]
    fn type_conflict_is_refused() {
        let mut s = TableSchema::new();
        assert!(
            s.merge_column("cpu", "v", ColumnKind::Field(FieldType::Float))
                .unwrap()
        );
        assert!(
            !s.merge_column("cpu", "v", ColumnKind::Field(FieldType::Float))
                .unwrap()
        );
        let err = s
            .merge_column("cpu", "v", ColumnKind::Field(FieldType::Integer))
            .unwrap_err();
        assert!(err.to_string().contains("float field"), "{err}");
        assert!(s.merge_column("cpu", "time", ColumnKind::Tag).is_err());
    }
}
