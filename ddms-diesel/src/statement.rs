//! Running an [`Sql`] on a connection: [`Statement`] walks its text and binds for
//! Diesel, planned per call ([`Sql::query`]) or as a cached prepared statement
//! ([`Sql::prepared`]; lists whose plan the compiler marked stable through
//! [`StableTexts`], which bounds them per backend).
//!
//! Prepared statements are for [`Sql`] whose text comes from a fixed set (a record by id,
//! the insert of records): Diesel keeps them prepared per connection, keyed by their
//! text, so PostgreSQL parses and plans them once per connection instead of on every
//! call. Planning is most of the cost of a primary-key read here (RLS and the records
//! indexes): measured with pgbench as the app role, 7.1k reads/s re-planned vs 29.7k
//! prepared on 2 clients.
//!
//! Only for texts from a bounded set whose generic plan is the right one whatever the
//! values (primary-key reads, the insert, list queries whose plan is marked stable by
//! `Compiler::query`): Diesel's statement cache is unbounded, and PostgreSQL switches a
//! prepared statement to a generic plan after five calls — for an arbitrary compiled
//! filter that plan can be far off (tried: an equality list fell from 1.4k to 10 req/s),
//! so other list queries are planned per call.

use std::hash::BuildHasher;
use std::sync::Mutex;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types as st;
use diesel::sql_types::Untyped;
use diesel::{QueryResult, RunQueryDsl};

use crate::sql::{Bind, Sql};

/// How many distinct list texts marked stable ([`Sql::stable_plan`]) one backend runs
/// prepared. Their number is bounded by their shapes (value classes × bounds ×
/// directions × keyset forms × page-size buckets: a few thousand at most), but each one
/// a connection keeps prepared holds ~130 kB of plan in its PostgreSQL backend (measured
/// for a value walk: `pg_backend_memory_contexts`), and Diesel's statement cache never
/// evicts. So the first texts a backend sees run prepared and later new ones are
/// planned per call: at most 64 × ~130 kB ≈ 8 MB per connection, whatever clients send.
pub const STABLE_TEXTS: usize = 64;

/// The same bound for bounded walks (`Compiler::bounded_walk`), counted apart: their
/// texts follow the filters clients send (up to four predicates in any order of the
/// records), so an application with many list shapes could otherwise take every slot
/// before a unique lookup or a value walk, which gain most from staying prepared
/// (3.3k against 10.6k req/s for a unique lookup planned per call). At most 32 more
/// plans per connection (~4 MB if each were the size measured for a value walk, ~130
/// kB; a walk's own size was not measured).
pub const STABLE_WALK_TEXTS: usize = 32;

/// The stable list texts a backend has admitted to run prepared (by hash), up to a cap.
/// Every stable list hashes its text here, so with foldhash (like the backend's other
/// per-request maps), not SipHash.
pub struct StableTexts {
    cap: usize,
    seen: Mutex<foldhash::HashSet<u64>>,
    hasher: foldhash::fast::RandomState,
}

impl Default for StableTexts {
    fn default() -> Self {
        StableTexts::new(STABLE_TEXTS)
    }
}

impl StableTexts {
    pub(crate) fn new(cap: usize) -> StableTexts {
        StableTexts {
            cap,
            seen: Mutex::default(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// True when `text` was admitted before, or is admitted now (room left).
    fn admit(&self, text: &str) -> bool {
        let key = self.hasher.hash_one(text);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) {
            return true;
        }
        if seen.len() < self.cap {
            seen.insert(key);
            return true;
        }
        false
    }

    /// `sql` ready to run: prepared when its plan is stable and its text is admitted,
    /// otherwise planned per call.
    pub(crate) fn statement(&self, sql: &Sql) -> Statement {
        let cache = sql.stable_plan && self.admit(&sql.text);
        Statement::new(sql.clone(), cache)
    }
}

/// An [`Sql`] ready to run: planned per call, or cached as a prepared statement.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Whether Diesel may keep it prepared (keyed by its text).
    cache: bool,
    text: String,
    /// Per placeholder, in text order: where it is in `text` and which bind it takes.
    slots: Vec<(usize, usize, usize)>,
    binds: Vec<Bind>,
}

impl Statement {
    pub(crate) fn new(sql: Sql, cache: bool) -> Statement {
        let Sql { text, binds, .. } = sql;
        let bytes = text.as_bytes();
        let mut slots = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if let Ok(n) = text[i + 1..i + 1 + digits].parse::<usize>() {
                    slots.push((i, i + 1 + digits, n - 1));
                }
                i += 1 + digits;
            } else {
                i += 1;
            }
        }
        // Diesel binds by reference while walking: give borrowed text arrays an owned form.
        let binds = binds
            .into_iter()
            .map(|b| match b {
                Bind::StrArr(v) => Bind::TextArr(v.iter().map(|s| s.as_str().to_owned()).collect()),
                b => b,
            })
            .collect();
        Statement {
            cache,
            text,
            slots,
            binds,
        }
    }
}

fn push_bind<'b>(out: &mut AstPass<'_, 'b, Pg>, b: &'b Bind) -> QueryResult<()> {
    match b {
        Bind::Uuid(v) => out.push_bind_param::<st::Uuid, _>(v),
        Bind::Text(v) => out.push_bind_param::<st::Text, _>(v),
        Bind::Name(v) => out.push_bind_param::<st::Text, str>(v.as_str()),
        Bind::Str(v) => out.push_bind_param::<st::Text, str>(v.as_str()),
        Bind::StrArr(_) => Err(diesel::result::Error::QueryBuilderError(
            "text arrays are bound in their owned form".into(),
        )),
        Bind::Int(v) => out.push_bind_param::<st::BigInt, _>(v),
        Bind::Int4(v) => out.push_bind_param::<st::Integer, _>(v),
        Bind::Float(v) => out.push_bind_param::<st::Double, _>(v),
        Bind::Bool(v) => out.push_bind_param::<st::Bool, _>(v),
        Bind::Date(v) => out.push_bind_param::<st::Date, _>(v),
        Bind::Ts(v) => out.push_bind_param::<st::Timestamptz, _>(v),
        Bind::Json(v) => out.push_bind_param::<st::Jsonb, _>(v),
        Bind::UuidArr(v) => out.push_bind_param::<st::Array<st::Uuid>, _>(v),
        Bind::TextArr(v) => out.push_bind_param::<st::Array<st::Text>, _>(v),
        Bind::IntArr(v) => out.push_bind_param::<st::Array<st::BigInt>, _>(v),
        Bind::FloatArr(v) => out.push_bind_param::<st::Array<st::Double>, _>(v),
        Bind::BoolArr(v) => out.push_bind_param::<st::Array<st::Bool>, _>(v),
        Bind::DateArr(v) => out.push_bind_param::<st::Array<st::Date>, _>(v),
        Bind::TsArr(v) => out.push_bind_param::<st::Array<st::Timestamptz>, _>(v),
        Bind::JsonArr(v) => out.push_bind_param::<st::Array<st::Jsonb>, _>(v),
    }
}

impl QueryFragment<Pg> for Statement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if !self.cache {
            out.unsafe_to_cache_prepared();
        }
        // Diesel numbers the placeholders itself, one per bind it is given: a bind
        // used twice in the text is passed twice.
        let mut at = 0;
        for &(start, end, n) in &self.slots {
            out.push_sql(&self.text[at..start]);
            let b = self.binds.get(n).ok_or_else(|| {
                diesel::result::Error::QueryBuilderError(format!("no bind for ${}", n + 1).into())
            })?;
            push_bind(&mut out, b)?;
            at = end;
        }
        out.push_sql(&self.text[at..]);
        Ok(())
    }
}

impl QueryId for Statement {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement {
    type SqlType = Untyped;
}

impl<C: diesel::Connection<Backend = Pg>> RunQueryDsl<C> for Statement {}

impl Sql {
    /// This statement as a cached prepared statement: only for texts from a fixed set
    /// (see the [module docs](crate::statement)).
    pub fn prepared(self) -> Statement {
        Statement::new(self, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::query_builder::QueryBuilder;

    #[test]
    fn stable_texts_are_admitted_up_to_the_cap_and_known_ones_stay_admitted() {
        let a = StableTexts::new(3);
        for t in ["a", "b", "c"] {
            assert!(a.admit(t), "{t}: room left");
        }
        assert!(!a.admit("d"), "a fourth text is planned per call");
        assert!(!a.admit("e"));
        for t in ["c", "a", "b"] {
            assert!(a.admit(t), "{t} was admitted and stays so");
        }
        assert!(!a.admit("d"));
    }

    #[test]
    fn placeholders_are_renumbered_in_text_order_and_repeats_bind_twice() {
        let mut s = Sql::new();
        let t = s.param(Bind::Int(7));
        let u = s.param(Bind::Text("x".into()));
        s.push(&format!(
            "SELECT {u}, {t} WHERE a = {t} AND b = '$' AND c = {u}"
        ));
        let p = s.prepared();
        assert_eq!(
            p.slots.iter().map(|s| s.2).collect::<Vec<_>>(),
            vec![1, 0, 0, 1]
        );
        let mut qb = diesel::pg::PgQueryBuilder::default();
        p.to_sql(&mut qb, &Pg).unwrap();
        assert_eq!(
            qb.finish(),
            "SELECT $1, $2 WHERE a = $3 AND b = '$' AND c = $4"
        );
    }
}
