//! Tenants, actors and roles: who is asking, for which tenant.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A tenant's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub Uuid);

impl TenantId {
    /// A fresh random tenant id.
    pub fn random() -> Self {
        TenantId(Uuid::new_v4())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for TenantId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(TenantId)
            .map_err(|_| Error::invalid("tenant_id", "invalid_uuid", "tenant id must be a uuid"))
    }
}

/// A tenant: the unit of isolation. Every other object belongs to exactly one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// What an actor may do within a tenant. Ordered: each role includes the ones below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read only.
    Viewer,
    /// Read and write records and relations.
    Editor,
    /// Everything, including schema (entity types, relation types) and indexes.
    Admin,
}

impl Role {
    /// Parses `admin`, `editor` or `viewer` (case-insensitive).
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

/// Who is acting, for which tenant: every data access is bound to one `Scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The tenant all reads and writes are confined to.
    pub tenant: TenantId,
    /// The actor (user id or token subject), recorded in `created_by`/`updated_by` and events.
    pub actor: String,
    /// The actor's strongest role.
    pub role: Role,
}

impl Scope {
    /// A scope for `actor` in `tenant` with `role`.
    pub fn new(tenant: TenantId, actor: impl Into<String>, role: Role) -> Self {
        Scope {
            tenant,
            actor: actor.into(),
            role,
        }
    }

    /// Fails with [`Error::Forbidden`] unless the scope's role is at least `needed`.
    pub fn require(&self, needed: Role, action: &str) -> Result<()> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{action} needs the {} role; the actor has {}",
                needed.as_str(),
                self.role.as_str()
            )))
        }
    }
}
