//! Queries: checked filter + sort + keyset cursor + bounded limit + field selection.

use std::cmp::Ordering;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::entity_type::EntityType;
use crate::error::{Error, Result};
use crate::filter::eval::{cmp_key, value_of};
use crate::filter::{check, CheckedFilter, Filter, Scalar, SchemaLookup, SysField, Target};
use crate::name::{truncate, Name};
use crate::record::{RawRecord, Record};

/// Page size when none is given.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;
/// Most sort keys.
pub const MAX_SORT_KEYS: usize = 8;
/// Longest cursor accepted (bytes).
pub const MAX_CURSOR_LEN: usize = 8192;

/// One sort key as clients send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortKey {
    /// Field (or `id`, `created_at`, `updated_at`).
    pub field: String,
    /// Descending.
    #[serde(default)]
    pub desc: bool,
}

impl SortKey {
    /// Parses `-created_at,title` (a leading `-` means descending).
    pub fn parse_list(s: &str) -> Vec<SortKey> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.strip_prefix('-') {
                Some(f) => SortKey {
                    field: f.to_string(),
                    desc: true,
                },
                None => SortKey {
                    field: p.strip_prefix('+').unwrap_or(p).to_string(),
                    desc: false,
                },
            })
            .collect()
    }
}

/// A query as clients send it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Filter (JSON AST).
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Sort keys; `id` is always appended as the final tie-breaker (in the direction of
    /// the last key). Default `created_at`.
    #[serde(default)]
    pub sort: Vec<SortKey>,
    /// Page size (default 50, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Opaque cursor from a previous page of the same query.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Return only these fields in `data`.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

/// A checked sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSort {
    /// What to sort by (orderable).
    pub target: Target,
    /// Descending.
    pub desc: bool,
}

/// A query checked against its entity type: what backends receive.
#[derive(Debug, Clone)]
pub struct CheckedQuery {
    /// The entity type queried.
    pub entity_type: Arc<EntityType>,
    /// The filter.
    pub filter: Option<CheckedFilter>,
    /// Sort keys, ending with `id` (the unique tie-breaker, in the last key's direction).
    pub sort: Vec<CheckedSort>,
    /// Page size; backends return up to `limit + 1` records so a next page can be detected.
    pub limit: usize,
    /// Keyset position: the previous page's last sort values (one per sort key; `None`
    /// is a missing value). Backends return only records strictly after it.
    pub after: Option<Vec<Option<Scalar>>>,
    /// Field selection (applied by the handle after the backend returns).
    pub fields: Option<Vec<Name>>,
    fingerprint: [u8; 16],
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor for the next page, `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Signs and verifies cursors so that they cannot be forged or moved between queries.
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CursorKey {
    /// A random key (cursors die with the process).
    pub fn random() -> Self {
        use rand::RngCore;
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        CursorKey(k)
    }

    /// A key derived from a secret (cursors survive restarts).
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"ddms-cursor-v1\0");
        h.update(secret);
        CursorKey(h.finalize().into())
    }

    fn mac(&self, payload: &[u8]) -> [u8; 16] {
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(&self.0).expect("hmac takes any key length");
        m.update(payload);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// Encodes a signed cursor holding `payload`, bound to `fingerprint`.
    pub fn encode(&self, fingerprint: &[u8; 16], payload: &Value) -> String {
        let body =
            serde_json::to_vec(&json!({"q": URL_SAFE_NO_PAD.encode(fingerprint), "k": payload}))
                .expect("json values serialise");
        let mac = self.mac(&body);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// Verifies a cursor and returns its payload; rejects edits and other queries' cursors.
    pub fn decode(&self, fingerprint: &[u8; 16], cursor: &str) -> Result<Value> {
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(Error::InvalidCursor("cursor is too long".into()));
        }
        let bad = || Error::InvalidCursor("not a cursor issued by this server".into());
        let (body, mac) = cursor.split_once('.').ok_or_else(bad)?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| bad())?;
        let expected = self.mac(&body);
        if !constant_time_eq(&mac, &expected) {
            return Err(Error::InvalidCursor(
                "cursor signature does not match: it was altered or issued elsewhere".into(),
            ));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|_| bad())?;
        if v.get("q").and_then(Value::as_str) != Some(&URL_SAFE_NO_PAD.encode(fingerprint)) {
            return Err(Error::InvalidCursor(
                "cursor belongs to a different query (filter, sort or type changed)".into(),
            ));
        }
        Ok(v.get("k").cloned().unwrap_or(Value::Null))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fingerprint of the parts of a query that a cursor depends on.
pub fn fingerprint(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl Query {
    /// Checks the query against `ty`, verifying the cursor with `key`.
    pub fn check(
        &self,
        ty: Arc<EntityType>,
        schema: &dyn SchemaLookup,
        key: &CursorKey,
    ) -> Result<CheckedQuery> {
        let filter = match &self.filter {
            Some(f) => Some(check(&ty, f, schema)?),
            None => None,
        };
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
            Some(l) => {
                return Err(Error::query(
                    "limit",
                    format!("limit must be between 1 and {MAX_LIMIT}, got {l}"),
                ))
            }
        };
        if self.sort.len() > MAX_SORT_KEYS {
            return Err(Error::query(
                "sort",
                format!("at most {MAX_SORT_KEYS} sort keys"),
            ));
        }
        let mut sort = Vec::with_capacity(self.sort.len() + 1);
        for (i, k) in self.sort.iter().enumerate() {
            let target = Target::resolve(&ty, &k.field).ok_or_else(|| {
                Error::query(
                    format!("sort[{i}]"),
                    format!("unknown field `{}` on {}", truncate(&k.field, 60), ty.name),
                )
            })?;
            if target.class().is_none() {
                return Err(Error::query(
                    format!("sort[{i}]"),
                    format!(
                        "cannot sort by `{}`: json and list fields are not orderable",
                        k.field
                    ),
                ));
            }
            if sort.iter().any(|s: &CheckedSort| s.target == target) {
                return Err(Error::query(
                    format!("sort[{i}]"),
                    format!("`{}` is sorted on twice", k.field),
                ));
            }
            sort.push(CheckedSort {
                target,
                desc: k.desc,
            });
        }
        if sort.is_empty() {
            sort.push(CheckedSort {
                target: Target::System(SysField::CreatedAt),
                desc: false,
            });
        }
        if !sort
            .iter()
            .any(|s| s.target == Target::System(SysField::Id))
        {
            // The tie-breaker follows the last key's direction, so a descending sort on
            // an indexed value is one backward index scan with no sort step.
            let desc = sort.last().is_some_and(|s| s.desc);
            sort.push(CheckedSort {
                target: Target::System(SysField::Id),
                desc,
            });
        }
        let fields = match &self.fields {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| match ty.field(n) {
                        Some(f) => Ok(f.name.clone()),
                        None => Err(Error::query(
                            format!("fields[{i}]"),
                            format!("unknown field `{}` on {}", truncate(n, 60), ty.name),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let filter_json = self
            .filter
            .as_ref()
            .map(|f| serde_json::to_string(f).unwrap_or_default())
            .unwrap_or_default();
        let sort_text: String = sort
            .iter()
            .map(|s| format!("{}{},", if s.desc { "-" } else { "" }, s.target.name()))
            .collect();
        let fp = fingerprint(&[
            ty.name.as_str().as_bytes(),
            ty.id.as_bytes(),
            filter_json.as_bytes(),
            sort_text.as_bytes(),
        ]);
        let after = match &self.cursor {
            None => None,
            Some(c) => {
                let payload = key.decode(&fp, c)?;
                let Value::Array(vals) = payload else {
                    return Err(Error::InvalidCursor("malformed cursor".into()));
                };
                if vals.len() != sort.len() {
                    return Err(Error::InvalidCursor("malformed cursor".into()));
                }
                let mut out = Vec::with_capacity(vals.len());
                for (s, v) in sort.iter().zip(&vals) {
                    if v.is_null() {
                        out.push(None);
                    } else {
                        let class = s
                            .target
                            .class()
                            .ok_or_else(|| Error::InvalidCursor("malformed cursor".into()))?;
                        out.push(Some(Scalar::from_json(class, v).ok_or_else(|| {
                            Error::InvalidCursor("malformed cursor".into())
                        })?));
                    }
                }
                Some(out)
            }
        };
        Ok(CheckedQuery {
            entity_type: ty,
            filter,
            sort,
            limit,
            after,
            fields,
            fingerprint: fp,
        })
    }
}

impl CheckedQuery {
    /// A digest of what the query's pages depend on besides the position: the entity
    /// type, the filter (values included) and the sort (what cursors are bound to).
    pub fn fingerprint(&self) -> &[u8; 16] {
        &self.fingerprint
    }

    /// The sort values of `r` for this query's keys.
    pub fn key_of(&self, r: &Record) -> Vec<Option<Scalar>> {
        self.sort.iter().map(|s| value_of(r, &s.target)).collect()
    }

    /// Orders two key tuples by this query's sort.
    pub fn cmp_keys(&self, a: &[Option<Scalar>], b: &[Option<Scalar>]) -> Ordering {
        for ((s, x), y) in self.sort.iter().zip(a).zip(b) {
            let o = cmp_key(x.as_ref(), y.as_ref(), s.desc);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Turns the backend's rows (up to `limit + 1`) into a page with a signed cursor and
    /// the field selection applied.
    pub fn into_page(&self, mut rows: Vec<Record>, key: &CursorKey) -> Page<Record> {
        let more = rows.len() > self.limit;
        rows.truncate(self.limit);
        let next_cursor = match rows.last() {
            Some(last) if more => Some(self.cursor_after(last, key)),
            _ => None,
        };
        if let Some(fields) = &self.fields {
            for r in &mut rows {
                r.data.retain(|k, _| fields.iter().any(|f| f.as_str() == k));
            }
        }
        Page {
            items: rows,
            next_cursor,
        }
    }

    /// [`CheckedQuery::into_page`] for records whose data is JSON text (no field
    /// selection: the caller applies it on parsed records). Only the last record of a
    /// page that has a next one is parsed, for its cursor.
    pub fn into_raw_page(
        &self,
        mut rows: Vec<RawRecord>,
        key: &CursorKey,
    ) -> Result<Page<RawRecord>> {
        let more = rows.len() > self.limit;
        rows.truncate(self.limit);
        let next_cursor = match rows.last() {
            Some(last) if more => Some(self.cursor_after(&last.to_record()?, key)),
            _ => None,
        };
        Ok(Page {
            items: rows,
            next_cursor,
        })
    }

    /// The signed cursor of the position after `last`.
    fn cursor_after(&self, last: &Record, key: &CursorKey) -> String {
        let vals: Vec<Value> = self
            .key_of(last)
            .iter()
            .map(|v| v.as_ref().map(Scalar::to_json).unwrap_or(Value::Null))
            .collect();
        key.encode(&self.fingerprint, &Value::Array(vals))
    }
}
