//! Relation types (typed edges between entity types) and relations (the edges).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, FieldError, Result};
use crate::field::json_has_nul;
use crate::name::{truncate, Name};

/// How many edges of a type a record may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cardinality {
    /// A source has at most one target, a target at most one source.
    OneToOne,
    /// A source has many targets; a target has at most one source.
    OneToMany,
    /// No limit (but an edge between the same two records exists at most once).
    ManyToMany,
}

/// What deleting a record does to its edges of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// The edges are deleted with the record (each with a `relation.deleted` event).
    #[default]
    Cascade,
    /// The record cannot be deleted while such edges exist.
    Restrict,
}

/// Which edges of a record to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Edges where the record is the source.
    #[default]
    Out,
    /// Edges where the record is the target.
    In,
    /// Both.
    Both,
}

/// A stored relation type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationType {
    /// Its id.
    pub id: Uuid,
    /// Tenant-unique slug.
    pub name: Name,
    /// Source entity type.
    pub source: Name,
    /// Target entity type.
    pub target: Name,
    /// Cardinality.
    pub cardinality: Cardinality,
    /// On-delete rule.
    pub on_delete: OnDelete,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A request to create a relation type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRelationType {
    /// Slug.
    pub name: String,
    /// Source entity type name.
    pub source: String,
    /// Target entity type name.
    pub target: String,
    /// Cardinality.
    pub cardinality: Cardinality,
    /// On-delete rule (default cascade).
    #[serde(default)]
    pub on_delete: OnDelete,
}

/// A checked relation type definition.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationTypeDef {
    /// Slug.
    pub name: Name,
    /// Source entity type.
    pub source: Name,
    /// Target entity type.
    pub target: Name,
    /// Cardinality.
    pub cardinality: Cardinality,
    /// On-delete rule.
    pub on_delete: OnDelete,
}

impl NewRelationType {
    /// Checks the names.
    pub fn check(&self) -> Result<RelationTypeDef> {
        let mut errs = Vec::new();
        let mut name = |what: &str, s: &str| match Name::parse(s) {
            Ok(n) => Some(n),
            Err(m) => {
                errs.push(FieldError::new(
                    what,
                    "invalid_name",
                    format!("invalid name `{}`: {m}", truncate(s, 80)),
                ));
                None
            }
        };
        let (n, s, t) = (
            name("name", &self.name),
            name("source", &self.source),
            name("target", &self.target),
        );
        match (n, s, t) {
            (Some(name), Some(source), Some(target)) => Ok(RelationTypeDef {
                name,
                source,
                target,
                cardinality: self.cardinality,
                on_delete: self.on_delete,
            }),
            _ => Err(Error::Validation(errs)),
        }
    }
}

/// A stored relation (edge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    /// Its id.
    pub id: Uuid,
    /// The relation type's name.
    #[serde(rename = "type")]
    pub relation_type: Name,
    /// Source record.
    pub source_id: Uuid,
    /// Target record.
    pub target_id: Uuid,
    /// Optional data on the edge.
    #[serde(default)]
    pub data: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Actor that created it.
    pub created_by: Option<String>,
}

/// A request to create a relation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRelation {
    /// Relation type name.
    #[serde(rename = "type")]
    pub relation_type: String,
    /// Source record id.
    pub source_id: Uuid,
    /// Target record id.
    pub target_id: Uuid,
    /// Optional data (any JSON object).
    #[serde(default)]
    pub data: Option<Value>,
}

impl NewRelation {
    /// Checks the type name and data.
    pub fn check(&self) -> Result<(Name, Value)> {
        let name = Name::parse_for("type", &self.relation_type)?;
        let data = self.data.clone().unwrap_or(Value::Null);
        if !matches!(data, Value::Null | Value::Object(_)) {
            return Err(Error::invalid(
                "data",
                "not_an_object",
                "relation data must be a JSON object",
            ));
        }
        if json_has_nul(&data) {
            return Err(Error::invalid(
                "data",
                "nul_in_text",
                "text must not contain NUL (\\u0000)",
            ));
        }
        Ok((name, data))
    }
}

/// Neighbour listing request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourQuery {
    /// The record whose edges are listed.
    pub record: Uuid,
    /// Only edges of this type.
    pub relation_type: Option<Name>,
    /// Which edges.
    pub direction: Direction,
    /// Page size (backends return up to `limit + 1` rows to detect a next page).
    pub limit: usize,
    /// Return only edges with an id greater than this (keyset on id).
    pub after: Option<Uuid>,
}
