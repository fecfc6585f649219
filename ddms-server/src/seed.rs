//! `ddms seed`: the demo workload of the original project, loaded in seconds.
//!
//! Removes the demo tenant (`11111111-1111-1111-1111-111111111111`) and everything it
//! owns, creates "Demo Seed Tenant" with the entity types `user`, `project` and
//! `resource` and the relation types `owns` (user → project, one to many), `member_of`
//! (user → project, many to many) and `uses` (project → resource, many to many), and
//! loads 400k users, 300k projects and 300k resources (1M records) and 4 relations per
//! project (1.2M relations) with [`ddms_diesel::bulk`]'s replacing load: binary COPY into
//! session-private staging tables and `INSERT ... SELECT` as the RLS-bound role. When no
//! other tenant has data, the new tables are built beside the live ones (schema
//! `ddms_bulk`), indexed and ANALYZEd on up to `SEED_MAX_CONNECTIONS` connections (at most
//! one per core) and swapped in by one short transaction at the end; otherwise it is one
//! transaction with the indexes maintained. Either way Ctrl-C leaves the previous tenant
//! (or none) visible as it was, and running it again starts clean.
//!
//! Rows are generated on a second thread while PostgreSQL consumes the COPY stream, in
//! bounded chunks, so memory stays flat whatever the size. Every row is derived from
//! `(seed value, stream, row number)` alone: the same `--seed-value` gives the same data.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ddms_core::{Cardinality, Error, NewEntityType, NewRelationType, OnDelete, RelationType};
use ddms_diesel::bulk::{
    analyze_tables, ordered_uuid, BulkEvents, BulkLoad, BulkOptions, BulkProgress, BulkReport,
    Chunk, RecordEncoder, RelationEncoder, ALL_TABLES, SCHEMA_TABLES,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use uuid::Uuid;

/// The demo tenant's id (the seed removes it first, then recreates it).
pub const DEMO_TENANT: Uuid = Uuid::from_u128(0x11111111_1111_1111_1111_111111111111);
/// The demo tenant's name.
pub const DEMO_TENANT_NAME: &str = "Demo Seed Tenant";
/// Users + projects + resources must add up to this unless `ALLOW_CUSTOM_SEED_TOTAL`.
pub const SEED_TOTAL: u64 = 1_000_000;

/// `ddms seed` options: flags, or the environment variables of the original seed script.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Number of user records.
    #[arg(long, env = "SEED_USERS", default_value_t = 400_000)]
    pub users: u64,
    /// Number of project records.
    #[arg(long, env = "SEED_PROJECTS", default_value_t = 300_000)]
    pub projects: u64,
    /// Number of resource records.
    #[arg(long, env = "SEED_RESOURCES", default_value_t = 300_000)]
    pub resources: u64,
    /// Rows per generated chunk (the unit streamed into COPY).
    #[arg(long, env = "SEED_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,
    /// Connection limit. Index builds and ANALYZE run on up to this many connections,
    /// but no more than the machine has cores (the rows themselves stream through one
    /// connection while the record tables' indexes build on a second).
    #[arg(long, env = "SEED_MAX_CONNECTIONS", default_value_t = 20)]
    pub max_connections: usize,
    /// Allow users + projects + resources to differ from 1,000,000.
    #[arg(long, env = "ALLOW_CUSTOM_SEED_TOTAL")]
    pub allow_custom_seed_total: bool,
    /// Seed of the data generator: the same value gives the same data (default: random).
    #[arg(long, env = "SEED_VALUE")]
    pub seed_value: Option<u64>,
    /// Never drop and rebuild the shared indexes, even when no other tenant has data.
    #[arg(long)]
    pub no_index_rebuild: bool,
    /// Skip the final ANALYZE.
    #[arg(long)]
    pub no_analyze: bool,
    /// Change-feed events for the loaded rows: `summary` (default: one `bulk.loaded`
    /// event per entity type and relation type, with the count and the first and last
    /// id) or `rows` (one `record.created` / `relation.created` event per row, as for
    /// single writes: 2.2M events at full size). See ARCHITECTURE.md and BENCHMARKS.md.
    #[arg(long, env = "SEED_EVENTS", default_value = "summary")]
    pub events: String,
    /// Tenant to (re)create (default: the demo tenant).
    #[arg(long, default_value_t = DEMO_TENANT)]
    pub tenant_id: Uuid,
    /// Progress display: auto (bars on a terminal, lines otherwise), bars, lines, none.
    #[arg(long, default_value = "auto")]
    pub progress: String,
}

impl Default for SeedArgs {
    fn default() -> Self {
        SeedArgs {
            users: 400_000,
            projects: 300_000,
            resources: 300_000,
            batch_size: 1000,
            max_connections: 20,
            allow_custom_seed_total: false,
            seed_value: None,
            no_index_rebuild: false,
            no_analyze: false,
            events: "summary".into(),
            tenant_id: DEMO_TENANT,
            progress: "auto".into(),
        }
    }
}

impl SeedArgs {
    /// Checks the guardrail and the bounds.
    pub fn check(&self) -> Result<(), String> {
        let total = self
            .users
            .checked_add(self.projects)
            .and_then(|t| t.checked_add(self.resources))
            .ok_or("SEED_USERS + SEED_PROJECTS + SEED_RESOURCES overflows")?;
        if total != SEED_TOTAL && !self.allow_custom_seed_total {
            return Err(format!(
                "SEED_USERS + SEED_PROJECTS + SEED_RESOURCES = {} + {} + {} = {total}, but the demo \
                 workload is {SEED_TOTAL} records; set ALLOW_CUSTOM_SEED_TOTAL=true (or pass \
                 --allow-custom-seed-total) to load a different total",
                self.users, self.projects, self.resources
            ));
        }
        if self.batch_size == 0 || self.batch_size > 1_000_000 {
            return Err(format!(
                "SEED_BATCH_SIZE must be between 1 and 1000000, got {}",
                self.batch_size
            ));
        }
        if self.max_connections == 0 {
            return Err("SEED_MAX_CONNECTIONS must be at least 1".into());
        }
        if !matches!(self.events.as_str(), "rows" | "summary") {
            return Err(format!(
                "--events (SEED_EVENTS) must be rows or summary, got {:?}",
                self.events
            ));
        }
        if !matches!(self.progress.as_str(), "auto" | "bars" | "lines" | "none") {
            return Err(format!(
                "--progress must be auto, bars, lines or none, got {:?}",
                self.progress
            ));
        }
        Ok(())
    }

    /// Relations loaded: per project one owner, one member and up to two resources.
    pub fn relation_counts(&self) -> [(&'static str, u64); 3] {
        let p = self.projects;
        let with_users = if self.users > 0 { p } else { 0 };
        [
            ("owns", with_users),
            ("member_of", with_users),
            ("uses", p * self.resources.min(2)),
        ]
    }
}

/// What a seed run did.
#[derive(Debug, Clone)]
pub struct SeedSummary {
    /// The tenant.
    pub tenant: Uuid,
    /// The generator seed used.
    pub seed_value: u64,
    /// Records per entity type, in load order.
    pub records: Vec<(String, u64)>,
    /// Relations per relation type, in load order.
    pub relations: Vec<(String, u64)>,
    /// The bulk load's report (index path, phases).
    pub load: BulkReport,
    /// ANALYZE time (`None` when skipped).
    pub analyze: Option<Duration>,
    /// `rows` or `summary`.
    pub events: String,
    /// Tables ANALYZE skipped (not owned by the connecting role).
    pub analyze_skipped: Vec<String>,
    /// Wall time of the whole seed, ANALYZE included.
    pub elapsed: Duration,
}

impl SeedSummary {
    /// Records + relations.
    pub fn rows(&self) -> u64 {
        self.records.iter().map(|r| r.1).sum::<u64>()
            + self.relations.iter().map(|r| r.1).sum::<u64>()
    }

    /// The human-readable summary printed at the end.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        out.push_str(&format!(
            "Seeded tenant {} \"{DEMO_TENANT_NAME}\" (seed value {})\n",
            self.tenant, self.seed_value
        ));
        let phase = |name: &str| -> Duration {
            self.load
                .phases
                .iter()
                .filter(|p| p.name == format!("copy {name}") || p.name == format!("insert {name}"))
                .map(|p| p.elapsed)
                .sum()
        };
        for (name, n) in self.records.iter().chain(&self.relations) {
            let t = phase(name).as_secs_f64().max(1e-9);
            out.push_str(&format!(
                "  {name:<10} {n:>9} rows  {t:>6.2} s  {:>9.0} rows/s\n",
                *n as f64 / t
            ));
        }
        for p in &self.load.phases {
            if !p.name.starts_with("copy ") && !p.name.starts_with("insert ") {
                out.push_str(&format!(
                    "  {:<28} {:>6.2} s\n",
                    p.name,
                    p.elapsed.as_secs_f64()
                ));
            }
        }
        if let Some(a) = self.analyze {
            out.push_str(&format!("  {:<28} {:>6.2} s\n", "analyze", a.as_secs_f64()));
        }
        if !self.analyze_skipped.is_empty() {
            out.push_str(&format!(
                "  analyze skipped (not the owner): {}\n",
                self.analyze_skipped.join(", ")
            ));
        }
        out.push_str(&format!("  index path: {}\n", self.load.index_path));
        out.push_str(&format!(
            "  events: {}\n",
            if self.events == "summary" {
                "summary (one bulk.loaded event per entity type and relation type)"
            } else {
                "one per record and relation"
            }
        ));
        out.push_str(&format!(
            "Total: {} records + {} relations = {} rows in {:.2} s ({:.0} rows/s), ANALYZE included\n",
            self.records.iter().map(|r| r.1).sum::<u64>(),
            self.relations.iter().map(|r| r.1).sum::<u64>(),
            self.rows(),
            secs,
            self.rows() as f64 / secs
        ));
        out
    }
}

// ---------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------

fn user_type() -> NewEntityType {
    serde_json::from_value(json!({
        "name": "user", "label": "User",
        "fields": [
            {"name": "name", "kind": "text", "required": true, "max_length": 200},
            {"name": "email", "kind": "email", "required": true, "unique": true},
            {"name": "role", "kind": "enum", "values": ["admin", "editor", "viewer"], "required": true},
            {"name": "age", "kind": "integer", "min": 13, "max": 120, "indexed": true},
            {"name": "active", "kind": "boolean", "default": true},
            {"name": "signup", "kind": "datetime", "indexed": true},
            {"name": "country", "kind": "text", "max_length": 2}
        ]
    }))
    .expect("static schema")
}

fn project_type() -> NewEntityType {
    serde_json::from_value(json!({
        "name": "project", "label": "Project",
        "fields": [
            {"name": "title", "kind": "text", "required": true, "max_length": 200},
            {"name": "status", "kind": "enum", "values": ["planned", "active", "on_hold", "done", "archived"], "required": true, "indexed": true},
            {"name": "budget", "kind": "number", "min": 0, "indexed": true},
            {"name": "due", "kind": "date"},
            {"name": "priority", "kind": "integer", "min": 1, "max": 5},
            {"name": "tags", "kind": "list", "items": "text", "max_length": 5}
        ]
    }))
    .expect("static schema")
}

fn resource_type() -> NewEntityType {
    serde_json::from_value(json!({
        "name": "resource", "label": "Resource",
        "fields": [
            {"name": "name", "kind": "text", "required": true, "max_length": 200},
            {"name": "kind", "kind": "enum", "values": ["document", "image", "video", "dataset", "code"], "required": true},
            {"name": "size", "kind": "integer", "min": 0},
            {"name": "url", "kind": "url"},
            {"name": "public", "kind": "boolean"}
        ]
    }))
    .expect("static schema")
}

fn relation_type(name: &str, source: &str, target: &str, c: Cardinality) -> NewRelationType {
    NewRelationType {
        name: name.into(),
        source: source.into(),
        target: target.into(),
        cardinality: c,
        on_delete: OnDelete::Cascade,
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic generation
// ---------------------------------------------------------------------------------------

/// SplitMix64: tiny, fast, and stable across versions (unlike library RNGs).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn for_row(seed: u64, stream: u64, i: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.0 ^= r.next().wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Rng(r.next())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn bits(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

const FIRST: &[&str] = &[
    "Ada", "Alan", "Alice", "Amara", "Ben", "Carla", "Chen", "Dana", "Diego", "Elena", "Emil",
    "Farah", "Grace", "Hana", "Ivan", "Jonas", "Kai", "Lena", "Liam", "Maya", "Noah", "Olga",
    "Omar", "Priya", "Quinn", "Rosa", "Sam", "Sofia", "Tariq", "Uma", "Vera", "Wei", "Yara", "Zoe",
];
const LAST: &[&str] = &[
    "Adams", "Baker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
    "Kowalski", "Lopez", "Martin", "Nguyen", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt",
    "Tanaka", "Urban", "Varga", "Weber", "Xu", "Yilmaz", "Zhang",
];
const COUNTRIES: &[&str] = &[
    "DE", "FR", "US", "GB", "JP", "BR", "IN", "NG", "ES", "IT", "NL", "SE", "PL", "CA", "AU", "MX",
    "KR", "ZA", "EG", "AR",
];
const ADJECTIVES: &[&str] = &[
    "Amber", "Blue", "Crimson", "Silent", "Rapid", "Golden", "Hidden", "Iron", "Lunar", "Northern",
    "Quiet", "Solar", "Swift", "Velvet", "Wild",
];
const NOUNS: &[&str] = &[
    "Falcon", "Harbor", "Engine", "Garden", "Bridge", "Compass", "Forge", "Lantern", "Orbit",
    "Pioneer", "Summit", "Beacon", "Atlas", "Delta", "Quarry",
];
const TAGS: &[&str] = &[
    "internal", "customer", "research", "urgent", "q1", "q2", "q3", "q4", "infra", "design", "ops",
    "mobile", "web", "data",
];
const STATUSES: &[&str] = &[
    "planned", "active", "active", "on_hold", "done", "done", "archived",
];
const KINDS: &[&str] = &["document", "image", "video", "dataset", "code"];
const EXTENSIONS: &[&str] = &["pdf", "png", "mp4", "csv", "rs"];

/// 2024-01-01T00:00:00Z in milliseconds: the base of the generated (time-ordered) ids.
const ID_EPOCH_MS: u64 = 1_704_067_200_000;
/// 2019-01-01T00:00:00Z: signups fall in the six years after it.
const SIGNUP_EPOCH: i64 = 1_546_300_800;

/// Stream tags (they also order the generated ids: users first).
const S_USER: u64 = 1;
const S_PROJECT: u64 = 2;
const S_RESOURCE: u64 = 3;
const S_OWNS: u64 = 4;
const S_MEMBER: u64 = 5;
const S_USES: u64 = 6;

/// The deterministic plan: counts, and where each stream's ids start.
#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    users: u64,
    projects: u64,
    resources: u64,
}

impl Plan {
    /// Id offsets: streams get consecutive millisecond ranges, so ids grow in load order.
    fn base(&self, stream: u64) -> u64 {
        let [owns, member, _] = [self.projects, self.projects, self.projects * 2];
        let starts = [
            0,
            self.users,
            self.users + self.projects,
            self.users + self.projects + self.resources,
            self.users + self.projects + self.resources + owns,
            self.users + self.projects + self.resources + owns + member,
        ];
        ID_EPOCH_MS + starts[(stream - 1) as usize]
    }

    fn id(&self, stream: u64, i: u64) -> Uuid {
        let mut r = Rng::for_row(self.seed, stream | 0x100, i);
        ordered_uuid(self.base(stream) + i, r.bits())
    }

    fn user(&self, i: u64) -> Value {
        let mut r = Rng::for_row(self.seed, S_USER, i);
        let first = r.pick(FIRST);
        let last = r.pick(LAST);
        let role = match r.below(100) {
            0..=4 => "admin",
            5..=29 => "editor",
            _ => "viewer",
        };
        let signup = SIGNUP_EPOCH + r.below(6 * 365 * 86_400) as i64;
        let signup = chrono::DateTime::from_timestamp(signup, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        json!({
            "name": format!("{first} {last}"),
            "email": format!("{}.{}.{i}@example.com", first.to_lowercase(), last.to_lowercase()),
            "role": role,
            "age": 18 + r.below(63),
            "active": r.below(100) < 85,
            "signup": signup,
            "country": r.pick(COUNTRIES),
        })
    }

    fn project(&self, i: u64) -> Value {
        let mut r = Rng::for_row(self.seed, S_PROJECT, i);
        let title = format!("{} {} {i}", r.pick(ADJECTIVES), r.pick(NOUNS));
        let due = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap_or_default()
            .checked_add_days(chrono::Days::new(r.below(1000)))
            .unwrap_or_default()
            .to_string();
        let ntags = r.below(4) as usize;
        let mut tags: Vec<&str> = Vec::with_capacity(ntags);
        for _ in 0..ntags {
            let t = r.pick(TAGS);
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        json!({
            "title": title,
            "status": r.pick(STATUSES),
            "budget": (r.below(100_000_000) as f64) / 100.0,
            "due": due,
            "priority": 1 + r.below(5),
            "tags": tags,
        })
    }

    fn resource(&self, i: u64) -> Value {
        let mut r = Rng::for_row(self.seed, S_RESOURCE, i);
        let k = r.below(KINDS.len() as u64) as usize;
        json!({
            "name": format!("{}-{i}.{}", r.pick(NOUNS).to_lowercase(), EXTENSIONS[k]),
            "kind": KINDS[k],
            "size": r.below(50_000_000),
            "url": format!("https://cdn.example.com/r/{i}"),
            "public": r.below(3) == 0,
        })
    }

    /// Edges of stream `s` for project `p`: (source, target) pairs.
    fn edges(&self, s: u64, p: u64, out: &mut Vec<(Uuid, Uuid)>) {
        out.clear();
        let project = self.id(S_PROJECT, p);
        let mut r = Rng::for_row(self.seed, s, p);
        match s {
            S_OWNS | S_MEMBER if self.users > 0 => {
                out.push((self.id(S_USER, r.below(self.users)), project));
            }
            S_USES if self.resources > 0 => {
                let a = r.below(self.resources);
                out.push((project, self.id(S_RESOURCE, a)));
                if self.resources > 1 {
                    let b = (a + 1 + r.below(self.resources - 1)) % self.resources;
                    out.push((project, self.id(S_RESOURCE, b)));
                }
            }
            _ => {}
        }
    }
}

type Msg = Option<ddms_core::Result<Chunk>>;

/// Generates every stream in load order into `tx` (`None` ends a stream).
fn generate(
    plan: Plan,
    encoders: [RecordEncoder; 3],
    rels: [RelationType; 3],
    batch: usize,
    tx: SyncSender<Msg>,
) {
    let send = |m: Msg| tx.send(m).is_ok();
    let streams: [(u64, u64); 3] = [
        (S_USER, plan.users),
        (S_PROJECT, plan.projects),
        (S_RESOURCE, plan.resources),
    ];
    for ((stream, n), mut enc) in streams.into_iter().zip(encoders) {
        for i in 0..n {
            let v = match stream {
                S_USER => plan.user(i),
                S_PROJECT => plan.project(i),
                _ => plan.resource(i),
            };
            if let Err(e) = enc.push_owned(plan.id(stream, i), v) {
                let _ = send(Some(Err(e)));
                return;
            }
            if enc.rows() as usize >= batch && !send(Some(Ok(enc.take()))) {
                return;
            }
        }
        if (enc.rows() > 0 && !send(Some(Ok(enc.take())))) || !send(None) {
            return;
        }
    }
    let mut edges = Vec::with_capacity(2);
    let mut all: Vec<(Uuid, Uuid)> = Vec::new();
    for (stream, rt) in [S_OWNS, S_MEMBER, S_USES].into_iter().zip(&rels) {
        let mut enc = RelationEncoder::new(rt);
        all.clear();
        for p in 0..plan.projects {
            plan.edges(stream, p, &mut edges);
            all.extend_from_slice(&edges);
        }
        // In the order of the unique key (type, source, target), with ids given in that
        // order: the builds of that index and of the primary key get presorted input.
        all.sort_unstable();
        for (k, (s, t)) in all.iter().enumerate() {
            enc.push(plan.id(stream, k as u64), *s, *t);
            if enc.rows() as usize >= batch && !send(Some(Ok(enc.take()))) {
                return;
            }
        }
        if (enc.rows() > 0 && !send(Some(Ok(enc.take())))) || !send(None) {
            return;
        }
    }
}

/// One stream's chunks out of the shared channel.
struct Stream<'a>(&'a Receiver<Msg>);

impl Iterator for Stream<'_> {
    type Item = ddms_core::Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.0.recv() {
            Ok(Some(c)) => Some(c),
            Ok(None) => None,
            Err(_) => Some(Err(Error::Internal("the data generator stopped".into()))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------

enum Display {
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    Lines {
        done: HashMap<String, u64>,
        totals: HashMap<String, u64>,
    },
    None,
}

impl Display {
    fn new(mode: &str, totals: &[(String, u64)]) -> Display {
        let tty = std::io::stderr().is_terminal();
        match (mode, tty) {
            ("none", _) => Display::None,
            ("bars", _) | ("auto", true) => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "{prefix:>10} [{bar:32}] {pos:>9}/{len:<9} {per_sec:>12} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let mut bars = HashMap::new();
                for (name, n) in totals {
                    let b = multi.add(ProgressBar::new(*n));
                    b.set_style(style.clone());
                    b.set_prefix(name.clone());
                    bars.insert(name.clone(), b);
                }
                Display::Bars { multi, bars }
            }
            _ => Display::Lines {
                done: HashMap::new(),
                totals: totals.iter().cloned().collect(),
            },
        }
    }

    fn copied(&mut self, what: &str, rows: u64) {
        match self {
            Display::Bars { bars, .. } => {
                if let Some(b) = bars.get(what) {
                    b.inc(rows);
                }
            }
            Display::Lines { done, totals } => {
                let d = done.entry(what.to_string()).or_default();
                let before = *d / 10_000;
                *d += rows;
                let total = totals.get(what).copied().unwrap_or(0);
                if *d / 10_000 > before || *d == total {
                    eprintln!("seed: {what}: {}/{total}", *d);
                }
            }
            Display::None => {}
        }
    }

    fn message(&mut self, msg: &str) {
        match self {
            Display::Bars { multi, .. } => {
                let _ = multi.println(format!("seed: {msg}"));
            }
            Display::Lines { .. } => eprintln!("seed: {msg}"),
            Display::None => {}
        }
    }

    fn phase(&mut self, name: &str) {
        if let Display::Bars { bars, .. } = self {
            // "insert users" / "copy users": show the step on the entity's bar.
            if let Some((step, what)) = name.split_once(' ') {
                let key = if bars.contains_key(what) {
                    what.to_string()
                } else {
                    "relations".to_string()
                };
                if let Some(b) = bars.get(&key) {
                    b.set_message(step.to_string());
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Display::Bars { bars, .. } = self {
            for b in bars.values() {
                b.finish_with_message("done");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// Seeds the database at `url` (migrated). Blocking.
pub fn run(url: &str, args: &SeedArgs) -> Result<SeedSummary, String> {
    args.check()?;
    let started = Instant::now();
    let seed_value = args.seed_value.unwrap_or_else(rand_seed);
    let plan = Plan {
        seed: seed_value,
        users: args.users,
        projects: args.projects,
        resources: args.resources,
    };
    let rel_counts = args.relation_counts();
    let relation_total: u64 = rel_counts.iter().map(|r| r.1).sum();
    let totals: Vec<(String, u64)> = vec![
        ("user".into(), args.users),
        ("project".into(), args.projects),
        ("resource".into(), args.resources),
        ("relations".into(), relation_total),
    ];
    let display = Arc::new(Mutex::new(Display::new(&args.progress, &totals)));
    lock(&display).message(&format!(
        "loading {} users, {} projects, {} resources and {relation_total} relations into tenant {} \
         (seed value {seed_value}); nothing is visible before the end: Ctrl-C leaves the \
         database as it was",
        args.users, args.projects, args.resources, args.tenant_id
    ));

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let opts = BulkOptions {
        rebuild_indexes: !args.no_index_rebuild,
        events: if args.events == "summary" {
            BulkEvents::Summary
        } else {
            BulkEvents::PerRow
        },
        connections: args.max_connections.min(cores).max(1),
        analyze: !args.no_analyze,
        ..BulkOptions::default()
    };
    let mut load = BulkLoad::replace(url, args.tenant_id, DEMO_TENANT_NAME, "seed", &opts)
        .map_err(|e| e.to_string())?;
    lock(&display).message(&format!("index path: {}", load.index_path()));
    {
        let display = display.clone();
        load.set_observer(move |p| {
            let mut d = lock(&display);
            match p {
                BulkProgress::Copied { what, rows } => {
                    let key = if what.as_str() == "owns"
                        || what.as_str() == "member_of"
                        || what.as_str() == "uses"
                    {
                        "relations"
                    } else {
                        what.as_str()
                    };
                    d.copied(key, *rows);
                }
                BulkProgress::Phase(name) => d.phase(name),
                BulkProgress::PhaseDone(name, t) => {
                    if !name.starts_with("copy ") {
                        d.message(&format!("{name}: {:.2} s", t.as_secs_f64()));
                    }
                }
            }
        });
    }
    if load.replaces_existing() {
        lock(&display).message(
            "the previous demo tenant and everything it owns is replaced when the load commits",
        );
    }
    let check = |t: NewEntityType| t.check().map_err(|e| e.to_string());
    let user = load
        .create_entity_type(&check(user_type())?)
        .map_err(|e| e.to_string())?;
    let project = load
        .create_entity_type(&check(project_type())?)
        .map_err(|e| e.to_string())?;
    let resource = load
        .create_entity_type(&check(resource_type())?)
        .map_err(|e| e.to_string())?;
    let mut rels = Vec::new();
    for (name, s, t, c) in [
        ("owns", "user", "project", Cardinality::OneToMany),
        ("member_of", "user", "project", Cardinality::ManyToMany),
        ("uses", "project", "resource", Cardinality::ManyToMany),
    ] {
        let def = relation_type(name, s, t, c)
            .check()
            .map_err(|e| e.to_string())?;
        rels.push(load.create_relation_type(&def).map_err(|e| e.to_string())?);
    }

    // About 32 MB of encoded rows may wait in the channel (a user with its field-value
    // rows is ~400 bytes): the generator runs ahead while PostgreSQL is busy. 128 MB was
    // not faster than 64 MB (4 alternating pairs: 9.03-10.12 s against 9.50-10.32 s), nor
    // 64 MB than 32 MB once the loader kept a type's field-value rows to sort them (3
    // pairs: 7.80-7.90 s against 7.65-8.08 s, peak RSS 239-249 MB against 212-226 MB).
    let capacity = (32 << 20) / (args.batch_size * 400).max(1);
    let (tx, rx) = sync_channel::<Msg>(capacity.clamp(2, 4096));
    // Encoders that also write the indexed fields' field-value rows (on the swapped path).
    let encoders = [
        load.record_encoder(&user).map_err(|e| e.to_string())?,
        load.record_encoder(&project).map_err(|e| e.to_string())?,
        load.record_encoder(&resource).map_err(|e| e.to_string())?,
    ];
    let rel_types = [rels[0].clone(), rels[1].clone(), rels[2].clone()];
    let gen_plan = plan.clone();
    let batch = args.batch_size;
    let generator = std::thread::Builder::new()
        .name("seed-generator".into())
        .spawn(move || generate(gen_plan, encoders, rel_types, batch, tx))
        .map_err(|e| format!("cannot start the generator thread: {e}"))?;

    let mut records = Vec::new();
    let mut relations = Vec::new();
    let result = (|| -> ddms_core::Result<()> {
        for ty in [&user, &project, &resource] {
            let n = load.copy_records(ty, Stream(&rx))?;
            records.push((ty.name.to_string(), n));
        }
        for rt in &rels {
            let n = load.copy_relations(rt, Stream(&rx))?;
            relations.push((rt.name.to_string(), n));
        }
        Ok(())
    })();
    drop(rx);
    let _ = generator.join();
    result.map_err(|e| e.to_string())?;
    let report = load.commit().map_err(|e| e.to_string())?;

    let (analyze_time, analyze_skipped) = if args.no_analyze {
        (None, Vec::new())
    } else {
        lock(&display).message("analyze");
        let t = Instant::now();
        // The exclusive path analyzed the bulk tables before publishing them.
        let tables: &[&str] = if report.analyzed {
            &SCHEMA_TABLES
        } else {
            &ALL_TABLES
        };
        let skipped = analyze_tables(url, tables, opts.connections).map_err(|e| e.to_string())?;
        (Some(t.elapsed()), skipped)
    };
    lock(&display).finish();
    Ok(SeedSummary {
        tenant: args.tenant_id,
        seed_value,
        events: args.events.clone(),
        records,
        relations,
        load: report,
        analyze: analyze_time,
        analyze_skipped,
        elapsed: started.elapsed(),
    })
}

fn lock(d: &Mutex<Display>) -> std::sync::MutexGuard<'_, Display> {
    d.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut r = Rng(t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32));
    r.next() % 1_000_000_000
}

/// `ddms seed`: opens (and migrates) the configured database, seeds, prints the summary.
pub fn run_cli(config: &ddms_server::Config, args: &SeedArgs) -> Result<(), String> {
    args.check()?;
    let db = ddms_server::Database::open(config).map_err(|e| e.to_string())?;
    let out = run(db.url(), args);
    db.close();
    let summary = out?;
    print!("{}", summary.render());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddms_core::{Query, Role, Scope, Store, TenantId};
    use ddms_diesel::{PgBackend, PgConfig};

    fn small(users: u64, projects: u64, resources: u64) -> SeedArgs {
        SeedArgs {
            users,
            projects,
            resources,
            batch_size: 7,
            max_connections: 2,
            allow_custom_seed_total: true,
            seed_value: Some(42),
            progress: "none".into(),
            ..SeedArgs::default()
        }
    }

    #[test]
    fn guardrail_needs_the_flag() {
        let mut a = small(10, 10, 10);
        a.allow_custom_seed_total = false;
        let e = a.check().unwrap_err();
        assert!(e.contains("ALLOW_CUSTOM_SEED_TOTAL"), "{e}");
        assert!(SeedArgs::default().check().is_ok());
        a.allow_custom_seed_total = true;
        assert!(a.check().is_ok());
        a.batch_size = 0;
        assert!(a.check().is_err());
    }

    #[test]
    fn generation_is_deterministic_and_valid() {
        let plan = Plan {
            seed: 7,
            users: 50,
            projects: 40,
            resources: 30,
        };
        assert_eq!(plan.user(3), plan.user(3));
        assert_ne!(plan.user(3), plan.user(4));
        assert_eq!(plan.id(S_USER, 5), plan.id(S_USER, 5));
        // Ids grow in load order across streams.
        assert!(plan.id(S_USER, 49) < plan.id(S_PROJECT, 0));
        assert!(plan.id(S_PROJECT, 39) < plan.id(S_RESOURCE, 0));
        let other = Plan {
            seed: 8,
            ..plan.clone()
        };
        assert_ne!(plan.user(3), other.user(3));
        // Dates and times in the formats the seed has always written.
        for i in 0..40 {
            let signup = plan.user(i)["signup"].as_str().unwrap().to_string();
            let t = chrono::DateTime::parse_from_rfc3339(&signup).unwrap();
            assert_eq!(signup, t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            let due = plan.project(i)["due"].as_str().unwrap().to_string();
            let d = chrono::NaiveDate::parse_from_str(&due, "%Y-%m-%d").unwrap();
            assert_eq!(due, d.format("%Y-%m-%d").to_string());
        }
        let mut edges = Vec::new();
        for p in 0..40 {
            plan.edges(S_USES, p, &mut edges);
            assert_eq!(edges.len(), 2);
            assert_ne!(edges[0].1, edges[1].1);
        }
    }

    #[test]
    fn seeds_a_small_tenant_and_reseeds_it() {
        let url = ddms_diesel::harness::fresh_database("seed_small").unwrap();
        ddms_diesel::migrate(&url).unwrap();
        let mut args = small(60, 40, 25);
        args.events = "rows".into();
        let first = run(&url, &args).unwrap();
        assert_eq!(
            first.records,
            vec![
                ("user".into(), 60),
                ("project".into(), 40),
                ("resource".into(), 25)
            ]
        );
        assert_eq!(
            first.relations,
            vec![
                ("owns".into(), 40),
                ("member_of".into(), 40),
                ("uses".into(), 80)
            ]
        );
        assert!(matches!(
            first.load.index_path,
            ddms_diesel::bulk::IndexPath::Swapped { .. }
        ));
        assert!(first.load.analyzed);
        assert!(first.render().contains("rows/s"));
        assert!(first.render().contains("swapped in at publish"));

        // The library sees it, through the rebuilt indexes.
        let store = Store::new(PgBackend::connect(&PgConfig::new(&url)).unwrap());
        let t = store.tenant(Scope::new(TenantId(DEMO_TENANT), "test", Role::Admin));
        let users = t.records("user").unwrap();
        let q: Query = serde_json::from_value(json!({
            "filter": {"field": "age", "op": "gte", "value": 18}, "limit": 1000
        }))
        .unwrap();
        assert_eq!(users.query(&q).unwrap().items.len(), 60);
        let one = plan_user_email(&args, 5);
        let q: Query = serde_json::from_value(json!({
            "filter": {"field": "email", "op": "eq", "value": one}
        }))
        .unwrap();
        assert_eq!(users.query(&q).unwrap().items.len(), 1);
        let events = t.events(0, Some(1000)).unwrap().events;
        // 3 entity types + 3 relation types + 125 records + 160 relations, gap-free.
        assert_eq!(events.len(), 3 + 3 + 125 + 160);
        assert!(events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as i64 + 1));
        assert_eq!(events[5].kind, ddms_core::EventKind::RelationTypeCreated);
        assert_eq!(events[6].kind, ddms_core::EventKind::RecordCreated);

        // Reseeding replaces it, with the same data for the same seed value.
        let second = run(&url, &args).unwrap();
        assert_eq!(second.rows(), first.rows());
        let q: Query =
            serde_json::from_value(json!({"filter": {"field": "email", "op": "eq", "value": one}}))
                .unwrap();
        assert_eq!(users.query(&q).unwrap().items.len(), 1);
    }

    #[test]
    fn summary_events_record_each_bulk_statement_once() {
        let url = ddms_diesel::harness::fresh_database("seed_summary").unwrap();
        ddms_diesel::migrate(&url).unwrap();
        let mut args = small(30, 20, 10);
        args.events = "summary".into();
        let summary = run(&url, &args).unwrap();
        assert!(summary.render().contains("bulk.loaded"));
        let store = Store::new(PgBackend::connect(&PgConfig::new(&url)).unwrap());
        let t = store.tenant(Scope::new(TenantId(DEMO_TENANT), "test", Role::Admin));
        let events = t.events(0, Some(100)).unwrap().events;
        let bulk: Vec<_> = events
            .iter()
            .filter(|e| e.kind == ddms_core::EventKind::BulkLoaded)
            .collect();
        assert_eq!(events.len(), 3 + 3 + 3 + 3, "{events:#?}");
        assert_eq!(bulk.len(), 6);
        assert_eq!(bulk[0].payload["entity_type"], "user");
        assert_eq!(bulk[0].payload["count"], 30);
        assert_eq!(bulk[5].payload["relation_type"], "uses");
        assert_eq!(bulk[5].payload["count"], 40);
        assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        // Single writes afterwards get per-row events as always.
        t.records("resource")
            .unwrap()
            .create(&json!({"name": "x", "kind": "code"}))
            .unwrap();
        let last = t.events(0, Some(100)).unwrap().events.pop().unwrap();
        assert_eq!(last.kind, ddms_core::EventKind::RecordCreated);
    }

    fn plan_user_email(args: &SeedArgs, i: u64) -> String {
        let plan = Plan {
            seed: args.seed_value.unwrap(),
            users: args.users,
            projects: args.projects,
            resources: args.resources,
        };
        plan.user(i)["email"].as_str().unwrap().to_string()
    }

    #[test]
    fn another_tenants_data_keeps_indexes_in_place() {
        let url = ddms_diesel::harness::fresh_database("seed_shared").unwrap();
        ddms_diesel::migrate(&url).unwrap();
        let store = Store::new(PgBackend::connect(&PgConfig::new(&url)).unwrap());
        let other = store.create_tenant(None, "Other").unwrap();
        let o = store.tenant(Scope::new(other.id, "x", Role::Admin));
        o.create_entity_type(
            &serde_json::from_value(
                json!({"name": "note", "fields": [{"name": "t", "kind": "text"}]}),
            )
            .unwrap(),
        )
        .unwrap();
        o.records("note")
            .unwrap()
            .create(&json!({"t": "keep me"}))
            .unwrap();
        let summary = run(&url, &small(20, 10, 5)).unwrap();
        assert!(matches!(
            summary.load.index_path,
            ddms_diesel::bulk::IndexPath::Maintained(_)
        ));
        assert_eq!(
            o.records("note")
                .unwrap()
                .query(&Query::default())
                .unwrap()
                .items
                .len(),
            1
        );
        let t = store.tenant(Scope::new(TenantId(DEMO_TENANT), "test", Role::Admin));
        assert_eq!(
            t.records("project")
                .unwrap()
                .query(&Query::default())
                .unwrap()
                .items
                .len(),
            10
        );
    }
}
