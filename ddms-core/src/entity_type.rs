//! Entity types: a tenant's named record shapes, and changes to them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, FieldError, Result};
use crate::field::{Field, FieldKind, FieldSpec};
use crate::name::{truncate, Name};

/// Most fields an entity type may have.
pub const MAX_FIELDS: usize = 200;

/// A stored entity type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityType {
    /// Its id.
    pub id: Uuid,
    /// Tenant-unique slug.
    pub name: Name,
    /// Display label (defaults to the name).
    pub label: String,
    /// Ordered fields.
    pub fields: Vec<Field>,
    /// Schema version, bumped by every change.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl EntityType {
    /// Version 1 of a new entity type with id `id`, created `at`.
    pub fn first_version(id: Uuid, def: &EntityTypeDef, at: DateTime<Utc>) -> EntityType {
        EntityType {
            id,
            name: def.name.clone(),
            label: def.label.clone(),
            fields: def.fields.clone(),
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }

    /// The field called `name`, if any.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| same_bytes(f.name.as_str().as_bytes(), name.as_bytes()))
    }
}

/// `a == b`, with names of up to 16 bytes compared in two (overlapping) loads each
/// rather than with a call to `bcmp`: a filter's field is looked up among the type's
/// fields for every predicate, and names of one length are common.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or_default());
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or_default());
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// A request to create an entity type, as clients send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntityType {
    /// Slug.
    pub name: String,
    /// Display label.
    #[serde(default)]
    pub label: Option<String>,
    /// Fields, in order.
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
}

/// A checked entity type definition: what a backend stores.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityTypeDef {
    /// Slug.
    pub name: Name,
    /// Display label.
    pub label: String,
    /// Fields, in order.
    pub fields: Vec<Field>,
}

fn check_label(label: &Option<String>, errs: &mut Vec<FieldError>) {
    if let Some(l) = label {
        if l.chars().count() > 200 || l.contains('\0') {
            errs.push(FieldError::new(
                "label",
                "invalid_label",
                "label must be at most 200 characters without NUL",
            ));
        }
    }
}

fn check_fields(fields: &[Field], errs: &mut Vec<FieldError>) {
    if fields.len() > MAX_FIELDS {
        errs.push(FieldError::new(
            "fields",
            "too_many_fields",
            format!("at most {MAX_FIELDS} fields"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, f) in fields.iter().enumerate() {
        if !seen.insert(f.name.as_str()) {
            errs.push(FieldError::new(
                format!("fields[{i}].name"),
                "duplicate_field",
                format!("field `{}` is declared twice", f.name),
            ));
        }
    }
}

impl NewEntityType {
    /// Checks the request; every problem is reported at once.
    pub fn check(&self) -> Result<EntityTypeDef> {
        let mut errs = Vec::new();
        let name = match Name::parse(&self.name) {
            Ok(n) => Some(n),
            Err(m) => {
                errs.push(FieldError::new(
                    "name",
                    "invalid_name",
                    format!(
                        "invalid entity type name `{}`: {m}",
                        truncate(&self.name, 80)
                    ),
                ));
                None
            }
        };
        check_label(&self.label, &mut errs);
        let mut fields = Vec::new();
        for (i, spec) in self.fields.iter().enumerate() {
            match Field::from_spec_at(spec, &format!("fields[{i}]")) {
                Ok(f) => fields.push(f),
                Err(e) => errs.extend(e),
            }
        }
        check_fields(&fields, &mut errs);
        match name {
            Some(name) if errs.is_empty() => Ok(EntityTypeDef {
                label: self.label.clone().unwrap_or_else(|| name.to_string()),
                name,
                fields,
            }),
            _ => Err(Error::Validation(errs)),
        }
    }
}

/// A change to an entity type: add, change and remove fields, relabel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityTypePatch {
    /// New label.
    #[serde(default)]
    pub label: Option<String>,
    /// Fields to append.
    #[serde(default)]
    pub add_fields: Vec<FieldSpec>,
    /// Fields to change, matched by name; the kind cannot change.
    #[serde(default)]
    pub update_fields: Vec<FieldSpec>,
    /// Names of fields to remove (their values are removed from every record).
    #[serde(default)]
    pub remove_fields: Vec<String>,
}

/// What a patch does to one field, for backends that keep per-field state.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum FieldChange {
    /// A new field.
    Added(Field),
    /// A field whose definition changed.
    Changed {
        /// Before.
        old: Field,
        /// After.
        new: Field,
    },
    /// A removed field.
    Removed(Field),
}

/// True when a field change keeps its kind: an enum may change its values, any other
/// kind (including a list's item kind) must stay the same.
fn same_kind(old: &FieldKind, new: &FieldKind) -> bool {
    match (old, new) {
        (FieldKind::Enum(_), FieldKind::Enum(_)) => true,
        _ => old == new,
    }
}

impl EntityTypePatch {
    /// Applies the patch to `current`; returns the new definition and the field changes.
    pub fn apply(&self, current: &EntityType) -> Result<(EntityTypeDef, Vec<FieldChange>)> {
        let mut errs = Vec::new();
        check_label(&self.label, &mut errs);
        let mut fields = current.fields.clone();
        let mut changes = Vec::new();
        for (i, name) in self.remove_fields.iter().enumerate() {
            match fields.iter().position(|f| f.name.as_str() == name) {
                Some(pos) => changes.push(FieldChange::Removed(fields.remove(pos))),
                None => errs.push(FieldError::new(
                    format!("remove_fields[{i}]"),
                    "unknown_field",
                    format!("no field `{}`", truncate(name, 80)),
                )),
            }
        }
        for (i, spec) in self.update_fields.iter().enumerate() {
            let path = format!("update_fields[{i}]");
            match Field::from_spec_at(spec, &path) {
                Ok(new) => match fields.iter_mut().find(|f| f.name == new.name) {
                    Some(old) if !same_kind(&old.kind, &new.kind) => errs.push(FieldError::new(
                        format!("{path}.kind"),
                        "kind_change",
                        format!(
                            "the kind of `{}` cannot change ({} to {}): remove the field and add a new one",
                            new.name,
                            old.kind.name(),
                            new.kind.name()
                        ),
                    )),
                    Some(old) => {
                        if *old != new {
                            changes.push(FieldChange::Changed {
                                old: old.clone(),
                                new: new.clone(),
                            });
                            *old = new;
                        }
                    }
                    None => errs.push(FieldError::new(
                        format!("{path}.name"),
                        "unknown_field",
                        format!("no field `{}` to update", new.name),
                    )),
                },
                Err(e) => errs.extend(e),
            }
        }
        for (i, spec) in self.add_fields.iter().enumerate() {
            match Field::from_spec_at(spec, &format!("add_fields[{i}]")) {
                Ok(f) => {
                    changes.push(FieldChange::Added(f.clone()));
                    fields.push(f);
                }
                Err(e) => errs.extend(e),
            }
        }
        check_fields(&fields, &mut errs);
        if !errs.is_empty() {
            return Err(Error::Validation(errs));
        }
        Ok((
            EntityTypeDef {
                name: current.name.clone(),
                label: self.label.clone().unwrap_or_else(|| current.label.clone()),
                fields,
            },
            changes,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_is_equality() {
        for n in 0..=24usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_bytes(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same_bytes(&a, &b), "{n} {i}");
            }
            let mut longer = a.clone();
            longer.push(b'x');
            assert!(!same_bytes(&a, &longer));
            assert!(!same_bytes(&longer, &a));
        }
    }
}
