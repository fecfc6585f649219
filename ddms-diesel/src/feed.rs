//! The change feed: reading events by cursor. Events are written by triggers in the
//! writing transaction (see the migration); seq numbers come from a per-tenant counter
//! whose row lock is held until commit, so a tenant's events become visible in seq
//! order and a reader that has seen seq N has already seen every seq below N.

use chrono::{DateTime, Utc};
use ddms_core::{Error, Event, EventKind, EventStore, Result, Scope};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{QueryableByName, RunQueryDsl};
use uuid::Uuid;

use crate::backend::PgBackend;
use crate::sql::{Bind, Sql};

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    entity_type: Option<String>,
    #[diesel(sql_type = SqlUuid)]
    subject_id: Uuid,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
    #[diesel(sql_type = Nullable<Text>)]
    actor: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    horizon: i64,
}

impl EventStore for PgBackend {
    fn events_after(&self, sc: &Scope, after: i64, limit: usize) -> Result<Vec<Event>> {
        self.tx(sc, |c| {
            // The horizon rides along as a column (and alone, via the outer join, when
            // there are no events), so this is one statement.
            let mut s = Sql::new();
            let t = s.param(Bind::Uuid(sc.tenant.0));
            let a = s.param(Bind::Int(after));
            let l = s.param(Bind::Int(limit as i64));
            s.push(&format!(
                "SELECT e.seq, e.kind, e.entity_type, e.subject_id, e.payload, e.actor, e.at, f.horizon \
                 FROM tenant_feeds f JOIN LATERAL (SELECT * FROM events WHERE tenant_id = {t} AND seq > {a} ORDER BY seq LIMIT {l}) e ON true \
                 WHERE f.tenant_id = {t} \
                 UNION ALL SELECT 0, '', NULL, '00000000-0000-0000-0000-000000000000'::uuid, 'null'::jsonb, NULL, now(), f.horizon \
                 FROM tenant_feeds f WHERE f.tenant_id = {t} ORDER BY 1"
            ));
            let rows: Vec<EventRow> = s.query().load(c)?;
            let Some(first) = rows.first() else {
                return Err(Error::not_found("tenant", sc.tenant).into());
            };
            if after < first.horizon {
                return Err(Error::CursorExpired { horizon: first.horizon }.into());
            }
            let mut out = Vec::with_capacity(rows.len());
            for r in rows.into_iter().filter(|r| r.seq > 0) {
                out.push(Event {
                    seq: r.seq,
                    kind: EventKind::parse(&r.kind).ok_or_else(|| Error::Internal(format!("unknown event kind {}", r.kind)))?,
                    entity_type: r.entity_type,
                    subject_id: r.subject_id,
                    payload: r.payload,
                    actor: r.actor,
                    at: r.at,
                });
            }
            Ok(out)
        })
    }
}
