//! The route table: every route, its handler, its required role, its parameters and
//! its bodies. The router ([`crate::App`]) and the OpenAPI document
//! ([`crate::openapi`]) are both generated from [`ROUTES`], so they cannot drift apart.

use ddms_core::Role;
use hyper::Method;

/// HTTP methods used by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Verb {
    /// The hyper method.
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }

    /// Lower-case name (OpenAPI operation key).
    pub fn lower(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    /// Upper-case name.
    pub fn upper(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    /// Whether requests carry a JSON body.
    pub fn has_body(self) -> bool {
        matches!(self, Verb::Post | Verb::Put | Verb::Patch)
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without authentication.
    Public,
    /// An authenticated caller with at least this role; not tenant-scoped (the tenant of
    /// the credentials need not exist).
    System(Role),
    /// An authenticated caller with at least this role, confined to its tenant (which
    /// must exist).
    Tenant(Role),
}

impl Access {
    /// The role needed, if any.
    pub fn role(self) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::System(r) | Access::Tenant(r) => Some(r),
        }
    }
}

/// The handler of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Endpoint {
    Health,
    OpenApi,
    CreateTenant,
    ListEntityTypes,
    CreateEntityType,
    GetEntityType,
    PatchEntityType,
    DeleteEntityType,
    ListRecords,
    CreateRecords,
    QueryRecords,
    GetRecord,
    PatchRecord,
    ReplaceRecord,
    DeleteRecord,
    ListRelationTypes,
    CreateRelationType,
    GetRelationType,
    DeleteRelationType,
    CreateRelation,
    GetRelation,
    DeleteRelation,
    ListNeighbours,
    ListEvents,
    EventStream,
    ListIndexes,
}

/// The type of a query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A free string.
    String,
    /// A string that must not be empty (filters, cursors).
    NonEmpty,
    /// An integer in `min..=max`.
    Integer {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A relation type name.
    Name,
}

/// A query parameter a route accepts. Any other parameter is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryParam {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// What it does.
    pub description: &'static str,
}

/// A request header a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderParam {
    /// `If-Match: "<version>"` (optimistic concurrency).
    IfMatch,
    /// `Last-Event-ID: <seq>` (SSE resume).
    LastEventId,
}

/// What a successful response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// JSON with this status and schema (a component name).
    Json(u16, &'static str),
    /// 204 without a body.
    NoContent,
    /// A `text/event-stream`.
    EventStream,
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Method.
    pub verb: Verb,
    /// Path, with `{name}` / `{id}` parameters (matchit and OpenAPI syntax).
    pub path: &'static str,
    /// Handler.
    pub endpoint: Endpoint,
    /// Who may call it (the library enforces the same roles).
    pub access: Access,
    /// One-line summary.
    pub summary: &'static str,
    /// OpenAPI tag.
    pub tag: &'static str,
    /// Accepted query parameters.
    pub query: &'static [QueryParam],
    /// Request headers read.
    pub headers: &'static [HeaderParam],
    /// Request body schema (a component name).
    pub body: Option<&'static str>,
    /// Success response.
    pub success: Success,
    /// Error statuses this route can answer with besides 400/401/403/413/415/503/500
    /// (which the generator adds where they apply).
    pub errors: &'static [u16],
}

impl Route {
    /// The OpenAPI operation id (unique; the handler's name in snake case).
    pub fn operation_id(&self) -> String {
        let name = format!("{:?}", self.endpoint);
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Path parameter names, in order.
    pub fn path_params(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect()
    }
}

const LIMIT_RECORDS: QueryParam = QueryParam {
    name: "limit",
    ty: ParamType::Integer { min: 1, max: 1000 },
    description: "page size (default 50, at most 1000)",
};
const CURSOR: QueryParam = QueryParam {
    name: "cursor",
    ty: ParamType::NonEmpty,
    description: "opaque cursor from the previous page's next_cursor",
};

const RECORD_LIST_PARAMS: &[QueryParam] = &[
    QueryParam {
        name: "filter",
        ty: ParamType::NonEmpty,
        description:
            "filter as URL-encoded JSON, e.g. {\"field\":\"age\",\"op\":\"gte\",\"value\":18}",
    },
    QueryParam {
        name: "sort",
        ty: ParamType::String,
        description:
            "comma-separated sort keys; a leading - sorts descending, e.g. -created_at,title",
    },
    LIMIT_RECORDS,
    CURSOR,
    QueryParam {
        name: "fields",
        ty: ParamType::String,
        description: "comma-separated fields to return in data",
    },
];

const NEIGHBOUR_PARAMS: &[QueryParam] = &[
    QueryParam {
        name: "type",
        ty: ParamType::Name,
        description: "only relations of this type",
    },
    QueryParam {
        name: "direction",
        ty: ParamType::Enum(&["out", "in", "both"]),
        description: "out: the record is the source (default); in: the target; both",
    },
    LIMIT_RECORDS,
    CURSOR,
];

const AFTER: QueryParam = QueryParam {
    name: "after",
    ty: ParamType::Integer {
        min: 0,
        max: i64::MAX,
    },
    description: "return events with seq greater than this (default 0)",
};

const EVENT_PARAMS: &[QueryParam] = &[
    AFTER,
    QueryParam {
        name: "limit",
        ty: ParamType::Integer { min: 1, max: 1000 },
        description: "page size (default 100, at most 1000)",
    },
];

use Access::{Public, System, Tenant};
use Role::{Admin, Editor, Viewer};

/// Every route of the API.
pub static ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/health",
        endpoint: Endpoint::Health,
        access: Public,
        summary: "Liveness and database check",
        tag: "system",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "Health"),
        errors: &[],
    },
    Route {
        verb: Verb::Get,
        path: "/openapi.json",
        endpoint: Endpoint::OpenApi,
        access: Public,
        summary: "This OpenAPI document",
        tag: "system",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "OpenApiDocument"),
        errors: &[],
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/tenants",
        endpoint: Endpoint::CreateTenant,
        access: System(Admin),
        summary: "Create a tenant",
        tag: "tenants",
        query: &[],
        headers: &[],
        body: Some("NewTenant"),
        success: Success::Json(201, "Tenant"),
        errors: &[409, 422],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/entity-types",
        endpoint: Endpoint::ListEntityTypes,
        access: Tenant(Viewer),
        summary: "List entity types",
        tag: "entity-types",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "EntityTypeList"),
        errors: &[404],
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/entity-types",
        endpoint: Endpoint::CreateEntityType,
        access: Tenant(Admin),
        summary: "Create an entity type",
        tag: "entity-types",
        query: &[],
        headers: &[],
        body: Some("NewEntityType"),
        success: Success::Json(201, "EntityType"),
        errors: &[404, 409, 422],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/entity-types/{name}",
        endpoint: Endpoint::GetEntityType,
        access: Tenant(Viewer),
        summary: "Read an entity type",
        tag: "entity-types",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "EntityType"),
        errors: &[404],
    },
    Route {
        verb: Verb::Patch,
        path: "/api/v1/entity-types/{name}",
        endpoint: Endpoint::PatchEntityType,
        access: Tenant(Admin),
        summary: "Add, change and remove fields",
        tag: "entity-types",
        query: &[],
        headers: &[],
        body: Some("EntityTypePatch"),
        success: Success::Json(200, "EntityType"),
        errors: &[404, 409, 422],
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/entity-types/{name}",
        endpoint: Endpoint::DeleteEntityType,
        access: Tenant(Admin),
        summary: "Delete an entity type and its records",
        tag: "entity-types",
        query: &[],
        headers: &[],
        body: None,
        success: Success::NoContent,
        errors: &[404, 409],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/entity-types/{name}/records",
        endpoint: Endpoint::ListRecords,
        access: Tenant(Viewer),
        summary: "List records (filter, sort, page, select fields)",
        tag: "records",
        query: RECORD_LIST_PARAMS,
        headers: &[],
        body: None,
        success: Success::Json(200, "RecordPage"),
        errors: &[404, 422],
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/entity-types/{name}/records",
        endpoint: Endpoint::CreateRecords,
        access: Tenant(Editor),
        summary: "Create a record ({\"data\":..}) or a batch ({\"records\":[..]}, all or nothing)",
        tag: "records",
        query: &[],
        headers: &[],
        body: Some("CreateRecords"),
        success: Success::Json(201, "CreatedRecords"),
        errors: &[404, 409, 422],
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/entity-types/{name}/records/query",
        endpoint: Endpoint::QueryRecords,
        access: Tenant(Viewer),
        summary: "Query records with a JSON body",
        tag: "records",
        query: &[],
        headers: &[],
        body: Some("Query"),
        success: Success::Json(200, "RecordPage"),
        errors: &[404, 422],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/entity-types/{name}/records/{id}",
        endpoint: Endpoint::GetRecord,
        access: Tenant(Viewer),
        summary: "Read a record",
        tag: "records",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "Record"),
        errors: &[404],
    },
    Route {
        verb: Verb::Patch,
        path: "/api/v1/entity-types/{name}/records/{id}",
        endpoint: Endpoint::PatchRecord,
        access: Tenant(Editor),
        summary: "Merge data into a record (null removes a field); If-Match or version for optimistic concurrency",
        tag: "records",
        query: &[],
        headers: &[HeaderParam::IfMatch],
        body: Some("RecordWrite"),
        success: Success::Json(200, "Record"),
        errors: &[404, 409, 422],
    },
    Route {
        verb: Verb::Put,
        path: "/api/v1/entity-types/{name}/records/{id}",
        endpoint: Endpoint::ReplaceRecord,
        access: Tenant(Editor),
        summary: "Replace a record's data; If-Match or version for optimistic concurrency",
        tag: "records",
        query: &[],
        headers: &[HeaderParam::IfMatch],
        body: Some("RecordWrite"),
        success: Success::Json(200, "Record"),
        errors: &[404, 409, 422],
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/entity-types/{name}/records/{id}",
        endpoint: Endpoint::DeleteRecord,
        access: Tenant(Editor),
        summary: "Delete a record; If-Match for optimistic concurrency",
        tag: "records",
        query: &[],
        headers: &[HeaderParam::IfMatch],
        body: None,
        success: Success::NoContent,
        errors: &[404, 409],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/relation-types",
        endpoint: Endpoint::ListRelationTypes,
        access: Tenant(Viewer),
        summary: "List relation types",
        tag: "relations",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "RelationTypeList"),
        errors: &[404],
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/relation-types",
        endpoint: Endpoint::CreateRelationType,
        access: Tenant(Admin),
        summary: "Create a relation type",
        tag: "relations",
        query: &[],
        headers: &[],
        body: Some("NewRelationType"),
        success: Success::Json(201, "RelationType"),
        errors: &[404, 409, 422],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/relation-types/{name}",
        endpoint: Endpoint::GetRelationType,
        access: Tenant(Viewer),
        summary: "Read a relation type",
        tag: "relations",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "RelationType"),
        errors: &[404],
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/relation-types/{name}",
        endpoint: Endpoint::DeleteRelationType,
        access: Tenant(Admin),
        summary: "Delete a relation type and its relations",
        tag: "relations",
        query: &[],
        headers: &[],
        body: None,
        success: Success::NoContent,
        errors: &[404, 409],
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/relations",
        endpoint: Endpoint::CreateRelation,
        access: Tenant(Editor),
        summary: "Create a relation between two records",
        tag: "relations",
        query: &[],
        headers: &[],
        body: Some("NewRelation"),
        success: Success::Json(201, "Relation"),
        errors: &[404, 409, 422],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/relations/{id}",
        endpoint: Endpoint::GetRelation,
        access: Tenant(Viewer),
        summary: "Read a relation",
        tag: "relations",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "Relation"),
        errors: &[404],
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/relations/{id}",
        endpoint: Endpoint::DeleteRelation,
        access: Tenant(Editor),
        summary: "Delete a relation",
        tag: "relations",
        query: &[],
        headers: &[],
        body: None,
        success: Success::NoContent,
        errors: &[404, 409],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/records/{id}/relations",
        endpoint: Endpoint::ListNeighbours,
        access: Tenant(Viewer),
        summary: "List a record's relations",
        tag: "relations",
        query: NEIGHBOUR_PARAMS,
        headers: &[],
        body: None,
        success: Success::Json(200, "RelationPage"),
        errors: &[404, 422],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/events",
        endpoint: Endpoint::ListEvents,
        access: Tenant(Viewer),
        summary: "Read the change feed after a sequence number",
        tag: "events",
        query: EVENT_PARAMS,
        headers: &[],
        body: None,
        success: Success::Json(200, "EventPage"),
        errors: &[404, 422],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/events/stream",
        endpoint: Endpoint::EventStream,
        access: Tenant(Viewer),
        summary: "Server-Sent Events: the change feed live (id = seq; Last-Event-ID or ?after resumes)",
        tag: "events",
        query: &[AFTER],
        headers: &[HeaderParam::LastEventId],
        body: None,
        success: Success::EventStream,
        errors: &[404, 422],
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/indexes",
        endpoint: Endpoint::ListIndexes,
        access: Tenant(Viewer),
        summary: "Every declared field index and its state",
        tag: "indexes",
        query: &[],
        headers: &[],
        body: None,
        success: Success::Json(200, "IndexList"),
        errors: &[404],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn routes_are_unique_and_consistent() {
        let mut seen = HashSet::new();
        let mut ops = HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.verb, r.path)),
                "{} {}",
                r.verb.upper(),
                r.path
            );
            assert!(ops.insert(r.operation_id()), "{}", r.operation_id());
            assert_eq!(r.body.is_some(), r.verb.has_body(), "{}", r.path);
            if r.path.starts_with("/api/v1/") {
                assert_ne!(r.access, Access::Public, "{}", r.path);
            }
            // Reads are viewer routes; writes need at least editor.
            if let Some(role) = r.access.role() {
                let read = r.verb == Verb::Get || r.endpoint == Endpoint::QueryRecords;
                assert_eq!(read, role == Role::Viewer, "{} {}", r.verb.upper(), r.path);
            }
        }
        assert_eq!(Route::operation_id(&ROUTES[2]), "create_tenant");
    }
}
