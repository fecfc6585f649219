//! `/openapi.json`: an OpenAPI 3.0 document generated from the route table
//! ([`crate::routes::ROUTES`]) and the body schemas below.
//!
//! Paths, methods, parameters, roles and statuses come from the same table the router
//! is built from. The body schemas are described by hand (the domain types live in
//! `ddms-core`, which knows nothing of HTTP); the integration tests validate every
//! response they receive against this document with [`validate`], and check that the
//! request examples deserialise into the library's types, so the two cannot drift
//! silently.

use serde_json::{json, Map, Value};

use crate::routes::{Access, HeaderParam, ParamType, Route, Success, ROUTES};

const NAME_PATTERN: &str = "^[a-z][a-z0-9_]*$";

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A nullable reference (OpenAPI 3.0 ignores siblings of `$ref`, hence `allOf`).
fn nullable(reference: Value) -> Value {
    json!({"nullable": true, "allOf": [reference]})
}

fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

fn datetime() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn list_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": r(item)},
            "next_cursor": {"type": "string", "nullable": true}
        }
    })
}

const KINDS: &[&str] = &[
    "text", "integer", "number", "boolean", "date", "datetime", "uuid", "email", "url", "enum",
    "json", "list",
];
const SCALAR_KINDS: &[&str] = &[
    "text", "integer", "number", "boolean", "date", "datetime", "uuid", "email", "url",
];
const EVENT_KINDS: &[&str] = &[
    "entity_type.created",
    "entity_type.updated",
    "entity_type.deleted",
    "record.created",
    "record.updated",
    "record.deleted",
    "relation.created",
    "relation.deleted",
    "relation_type.created",
    "relation_type.deleted",
    "bulk.loaded",
];

/// The component schemas (bodies of requests and responses).
pub fn schemas() -> Value {
    let field_spec = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "kind"],
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
            "label": {"type": "string", "maxLength": 200},
            "kind": {"type": "string", "enum": KINDS},
            "required": {"type": "boolean"},
            "unique": {"type": "boolean"},
            "indexed": {"type": "boolean"},
            "default": {"description": "value used when a record omits the field"},
            "min": {"type": "number"},
            "max": {"type": "number"},
            "min_length": {"type": "integer", "minimum": 0},
            "max_length": {"type": "integer", "minimum": 0},
            "pattern": {"type": "string", "maxLength": 512},
            "values": {"type": "array", "items": {"type": "string"}, "description": "enum values"},
            "items": {"type": "string", "enum": SCALAR_KINDS, "description": "item kind of a list"}
        },
        "example": {"name": "title", "kind": "text", "required": true, "indexed": true,
                     "unique": false, "max_length": 200}
    });
    let filter = json!({
        "description": "a predicate {field, op, value}, or {and:[..]}, {or:[..]}, {not:{..}}, or {related:{type, direction, where}}",
        "oneOf": [r("Predicate"), r("AndFilter"), r("OrFilter"), r("NotFilter"), r("RelatedFilter")]
    });
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "stable machine-readable code, e.g. validation_failed"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": r("FieldError")},
                    "horizon": {"type": "integer", "description": "cursor_expired: the oldest valid cursor"}
                }
            }}
        },
        "FieldError": {
            "type": "object",
            "required": ["field", "code", "message"],
            "properties": {
                "field": {"type": "string"},
                "code": {"type": "string"},
                "message": {"type": "string"}
            }
        },
        "Health": {
            "type": "object",
            "required": ["status", "database"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "database": {"type": "string", "enum": ["ok", "unavailable"]}
            }
        },
        "OpenApiDocument": {"type": "object"},
        "NewTenant": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name"],
            "properties": {
                "id": nullable(uuid()),
                "name": {"type": "string", "minLength": 1, "maxLength": 200}
            },
            "example": {"id": "33333333-3333-3333-3333-333333333333", "name": "Acme"}
        },
        "Tenant": {
            "type": "object",
            "required": ["id", "name", "created_at"],
            "properties": {"id": uuid(), "name": {"type": "string"}, "created_at": datetime()}
        },
        "FieldSpec": field_spec,
        "NewEntityType": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
                "label": {"type": "string", "maxLength": 200},
                "fields": {"type": "array", "items": r("FieldSpec")}
            },
            "example": {"name": "project", "label": "Project", "fields": [
                {"name": "title", "kind": "text", "required": true, "indexed": true, "max_length": 200},
                {"name": "status", "kind": "enum", "values": ["active", "done"]}
            ]}
        },
        "EntityTypePatch": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "label": {"type": "string", "maxLength": 200},
                "add_fields": {"type": "array", "items": r("FieldSpec")},
                "update_fields": {"type": "array", "items": r("FieldSpec")},
                "remove_fields": {"type": "array", "items": {"type": "string"}}
            },
            "example": {"label": "Projects", "add_fields": [{"name": "budget", "kind": "integer", "min": 0}],
                        "update_fields": [], "remove_fields": []}
        },
        "EntityType": {
            "type": "object",
            "required": ["id", "name", "label", "fields", "version", "created_at", "updated_at"],
            "properties": {
                "id": uuid(),
                "name": {"type": "string"},
                "label": {"type": "string"},
                "fields": {"type": "array", "items": r("FieldSpec")},
                "version": {"type": "integer"},
                "created_at": datetime(),
                "updated_at": datetime()
            }
        },
        "EntityTypeList": list_of("EntityType"),
        "Record": {
            "type": "object",
            "required": ["id", "entity_type", "data", "version", "created_at", "updated_at", "created_by", "updated_by"],
            "properties": {
                "id": uuid(),
                "entity_type": {"type": "string"},
                "data": {"type": "object", "additionalProperties": true},
                "version": {"type": "integer"},
                "created_at": datetime(),
                "updated_at": datetime(),
                "created_by": {"type": "string", "nullable": true},
                "updated_by": {"type": "string", "nullable": true}
            }
        },
        "RecordPage": list_of("Record"),
        "NewRecord": {
            "type": "object",
            "additionalProperties": false,
            "required": ["data"],
            "properties": {"data": {"type": "object", "additionalProperties": true}},
            "example": {"data": {"title": "Apollo"}}
        },
        "NewRecordBatch": {
            "type": "object",
            "additionalProperties": false,
            "required": ["records"],
            "properties": {"records": {"type": "array", "minItems": 1, "maxItems": 1000, "items": r("NewRecord")}},
            "example": {"records": [{"data": {"title": "Apollo"}}, {"data": {"title": "Gemini"}}]}
        },
        "CreateRecords": {"oneOf": [r("NewRecord"), r("NewRecordBatch")]},
        "RecordBatch": {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": r("Record")}}
        },
        "CreatedRecords": {"oneOf": [r("Record"), r("RecordBatch")]},
        "RecordWrite": {
            "type": "object",
            "additionalProperties": false,
            "required": ["data"],
            "properties": {
                "data": {"type": "object", "additionalProperties": true},
                "version": {"type": "integer", "minimum": 0, "description": "expected current version (409 if stale)"}
            },
            "example": {"data": {"title": "Apollo 11"}, "version": 1}
        },
        "SortKey": {
            "type": "object",
            "additionalProperties": false,
            "required": ["field"],
            "properties": {"field": {"type": "string"}, "desc": {"type": "boolean"}}
        },
        "Query": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "filter": nullable(r("Filter")),
                "sort": {"type": "array", "maxItems": 8, "items": r("SortKey")},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "nullable": true},
                "cursor": {"type": "string", "minLength": 1, "nullable": true},
                "fields": {"type": "array", "items": {"type": "string"}, "nullable": true}
            },
            "example": {"filter": {"field": "title", "op": "starts_with", "value": "Ap"},
                        "sort": [{"field": "created_at", "desc": true}], "limit": 50,
                        "cursor": null, "fields": ["title"]}
        },
        "Filter": filter,
        "Predicate": {
            "type": "object",
            "additionalProperties": false,
            "required": ["field", "op"],
            "properties": {
                "field": {"type": "string"},
                "op": {"type": "string", "enum": ddms_core::Op::ALL.map(ddms_core::Op::as_str)},
                "value": {"description": "operand (a list for in/not_in, a boolean for is_null/exists)"}
            }
        },
        "AndFilter": {
            "type": "object", "additionalProperties": false, "required": ["and"],
            "properties": {"and": {"type": "array", "items": r("Filter")}}
        },
        "OrFilter": {
            "type": "object", "additionalProperties": false, "required": ["or"],
            "properties": {"or": {"type": "array", "items": r("Filter")}}
        },
        "NotFilter": {
            "type": "object", "additionalProperties": false, "required": ["not"],
            "properties": {"not": r("Filter")}
        },
        "RelatedFilter": {
            "type": "object", "additionalProperties": false, "required": ["related"],
            "properties": {"related": {
                "type": "object", "additionalProperties": false, "required": ["type"],
                "properties": {
                    "type": {"type": "string"},
                    "direction": {"type": "string", "enum": ["out", "in"]},
                    "where": nullable(r("Filter"))
                }
            }}
        },
        "NewRelationType": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "source", "target", "cardinality"],
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
                "source": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
                "target": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
                "cardinality": {"type": "string", "enum": ["one_to_one", "one_to_many", "many_to_many"]},
                "on_delete": {"type": "string", "enum": ["cascade", "restrict"]}
            },
            "example": {"name": "owns", "source": "user", "target": "project",
                        "cardinality": "one_to_many", "on_delete": "cascade"}
        },
        "RelationType": {
            "type": "object",
            "required": ["id", "name", "source", "target", "cardinality", "on_delete", "created_at"],
            "properties": {
                "id": uuid(),
                "name": {"type": "string"},
                "source": {"type": "string"},
                "target": {"type": "string"},
                "cardinality": {"type": "string", "enum": ["one_to_one", "one_to_many", "many_to_many"]},
                "on_delete": {"type": "string", "enum": ["cascade", "restrict"]},
                "created_at": datetime()
            }
        },
        "RelationTypeList": list_of("RelationType"),
        "NewRelation": {
            "type": "object",
            "additionalProperties": false,
            "required": ["type", "source_id", "target_id"],
            "properties": {
                "type": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
                "source_id": uuid(),
                "target_id": uuid(),
                "data": {"type": "object", "nullable": true}
            },
            "example": {"type": "owns", "source_id": "33333333-3333-3333-3333-333333333333",
                        "target_id": "44444444-4444-4444-4444-444444444444", "data": {"since": 2020}}
        },
        "Relation": {
            "type": "object",
            "required": ["id", "type", "source_id", "target_id", "data", "created_at", "created_by"],
            "properties": {
                "id": uuid(),
                "type": {"type": "string"},
                "source_id": uuid(),
                "target_id": uuid(),
                "data": {"type": "object", "nullable": true},
                "created_at": datetime(),
                "created_by": {"type": "string", "nullable": true}
            }
        },
        "RelationPage": list_of("Relation"),
        "Event": {
            "type": "object",
            "required": ["seq", "kind", "entity_type", "subject_id", "payload", "actor", "at"],
            "properties": {
                "seq": {"type": "integer"},
                "kind": {"type": "string", "enum": EVENT_KINDS},
                "entity_type": {"type": "string", "nullable": true},
                "subject_id": uuid(),
                "payload": {"nullable": true},
                "actor": {"type": "string", "nullable": true},
                "at": datetime()
            }
        },
        "EventPage": {
            "type": "object",
            "required": ["events", "next"],
            "properties": {
                "events": {"type": "array", "items": r("Event")},
                "next": {"type": "integer", "description": "pass as ?after= to read on"}
            }
        },
        "IndexInfo": {
            "type": "object",
            "required": ["entity_type", "field", "kind", "unique", "state", "error", "updated_at"],
            "properties": {
                "entity_type": {"type": "string"},
                "field": {"type": "string"},
                "kind": {"type": "string"},
                "unique": {"type": "boolean"},
                "state": {"type": "string", "enum": ["pending", "building", "ready", "failed"]},
                "error": {"type": "string", "nullable": true},
                "updated_at": datetime()
            }
        },
        "IndexList": list_of("IndexInfo")
    })
}

fn param_schema(ty: ParamType) -> Value {
    match ty {
        ParamType::String => json!({"type": "string"}),
        ParamType::NonEmpty => json!({"type": "string", "minLength": 1}),
        ParamType::Integer { min, max } => {
            json!({"type": "integer", "format": "int64", "minimum": min, "maximum": max})
        }
        ParamType::Enum(values) => json!({"type": "string", "enum": values}),
        ParamType::Name => json!({"type": "string", "pattern": NAME_PATTERN, "maxLength": 63}),
    }
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": r("Error")}}})
}

fn operation(route: &Route, mock_auth: bool) -> Value {
    let mut params = Vec::new();
    for p in route.path_params() {
        let schema = if p == "id" {
            uuid()
        } else {
            json!({"type": "string", "pattern": NAME_PATTERN, "maxLength": 63})
        };
        params.push(json!({"name": p, "in": "path", "required": true, "schema": schema}));
    }
    for q in route.query {
        params.push(json!({
            "name": q.name, "in": "query", "required": false,
            "description": q.description, "schema": param_schema(q.ty)
        }));
    }
    for h in route.headers {
        params.push(match h {
            HeaderParam::IfMatch => json!({
                "name": "If-Match", "in": "header", "required": false,
                "description": "expected record version, e.g. \"3\" (409 if stale)",
                "schema": {"type": "string", "pattern": "^(W/)?\"?[0-9]+\"?$|^\\*$"}
            }),
            HeaderParam::LastEventId => json!({
                "name": "Last-Event-ID", "in": "header", "required": false,
                "description": "resume after this event sequence number",
                "schema": {"type": "string", "pattern": "^[0-9]*$"}
            }),
        });
    }
    let authenticated = route.access != Access::Public;
    if authenticated && mock_auth {
        params.push(json!({
            "name": "x-tenant-id", "in": "header", "required": false,
            "description": "tenant (mock auth); defaults to MOCK_TENANT_ID",
            "schema": uuid()
        }));
    }

    let mut responses = Map::new();
    match route.success {
        Success::Json(status, schema) => {
            responses.insert(
                status.to_string(),
                json!({"description": "success", "content": {"application/json": {"schema": r(schema)}}}),
            );
        }
        Success::NoContent => {
            responses.insert("204".into(), json!({"description": "done"}));
        }
        Success::EventStream => {
            responses.insert(
                "200".into(),
                json!({"description": "a stream of `id: <seq>`, `event: <kind>`, `data: <Event json>` messages",
                       "content": {"text/event-stream": {"schema": {
                           "description": "one Server-Sent Event per change: `id` is the event's seq, `event` its kind, `data` the Event as JSON",
                           "type": "object",
                           "properties": {"id": {"type": "string"}, "event": {"type": "string"}, "data": {"type": "string"}}
                       }}}}),
            );
        }
    }
    let mut add = |status: u16, description: &str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    };
    if authenticated {
        add(
            400,
            "malformed request (JSON syntax, query parameter, path id, header)",
        );
        add(401, "missing, malformed, expired or forged credentials");
        add(403, "the caller's role does not allow this");
    }
    for status in route.errors {
        add(
            *status,
            match status {
                404 => "not found (or another tenant's)",
                409 => "conflict (unique value, stale version, cardinality, in use, exists)",
                422 => "validation failed (body, filter, query, cursor)",
                _ => "error",
            },
        );
    }
    if route.body.is_some() {
        add(413, "request body too large");
        add(415, "request body is not JSON");
    }
    match route.success {
        Success::Json(_, "Health") => {
            responses.insert(
                "503".into(),
                json!({"description": "database unavailable",
                       "content": {"application/json": {"schema": r("Health")}}}),
            );
        }
        Success::Json(_, "OpenApiDocument") => {}
        _ => add(503, "database unavailable or request timed out; retry"),
    }
    responses.insert("default".into(), error_response("unexpected error"));

    let role = route.access.role();
    let mut description = String::new();
    if let Some(role) = role {
        description.push_str(&format!("Requires role: {}.", role.as_str()));
    } else {
        description.push_str("Public.");
    }
    let mut op = json!({
        "operationId": route.operation_id(),
        "summary": route.summary,
        "description": description,
        "tags": [route.tag],
        "parameters": params,
        "responses": responses,
        "x-required-role": role.map(|r| r.as_str()),
    });
    if let Some(body) = route.body {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": r(body)}}
        });
    }
    if authenticated && !mock_auth {
        op["security"] = json!([{"bearerAuth": []}]);
    }
    op
}

/// The OpenAPI document for an app in mock (`true`) or JWT auth mode.
pub fn document(mock_auth: bool) -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        item[route.verb.lower()] = operation(route, mock_auth);
    }
    let auth_text = if mock_auth {
        "Mock auth: every /api/v1 request acts for the tenant in `x-tenant-id` (default MOCK_TENANT_ID) with MOCK_ROLES."
    } else {
        "JWT auth: `Authorization: Bearer <HS256 token>` with claims tenant_id, sub, roles, exp."
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "DDMS API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Multi-tenant data whose shape is defined at run time. {auth_text} \
                Roles: viewer reads, editor writes records and relations, admin also changes the schema. \
                Errors are {{\"error\":{{\"code\",\"message\",\"details\"?}}}}.")
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        }
    })
}

/// Validates `value` against schema `schema` (a component name or an inline schema) of
/// `doc`, for the subset of OpenAPI 3.0 schemas this document uses. Returns the first
/// mismatch with its path.
///
/// # Errors
///
/// A description of the first mismatch.
pub fn validate(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    check(doc, schema, value, "$")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> Result<&'a Value, String> {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .ok_or_else(|| format!("unsupported $ref {reference}"))?;
            doc["components"]["schemas"]
                .get(name)
                .ok_or_else(|| format!("unknown schema {name}"))
        }
        None => Ok(schema),
    }
}

fn check(doc: &Value, schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let outer_nullable = schema.get("nullable") == Some(&Value::Bool(true));
    let s = resolve(doc, schema)?;
    if v.is_null() && (outer_nullable || s.get("nullable") == Some(&Value::Bool(true))) {
        return Ok(());
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for part in all {
            check(doc, part, v, path)?;
        }
    }
    if let Some(options) = s.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|o| check(doc, o, v, path).is_ok())
            .count();
        return if matching == 1 {
            Ok(())
        } else {
            Err(format!("{path}: matches {matching} of oneOf"))
        };
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            return Err(format!("{path}: {v} not in enum"));
        }
    }
    let Some(ty) = s.get("type").and_then(Value::as_str) else {
        return Ok(());
    };
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    };
    if !ok {
        return Err(format!("{path}: expected {ty}, got {v}"));
    }
    if s.get("format").and_then(Value::as_str) == Some("uuid")
        && uuid::Uuid::try_parse(v.as_str().unwrap_or("")).is_err()
    {
        return Err(format!("{path}: not a uuid"));
    }
    if s.get("format").and_then(Value::as_str) == Some("date-time")
        && chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or("")).is_err()
    {
        return Err(format!("{path}: not a date-time"));
    }
    if let Value::Object(o) = v {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !o.contains_key(k) {
                    return Err(format!("{path}: missing required `{k}`"));
                }
            }
        }
        for (k, child) in o {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => check(doc, ps, child, &format!("{path}.{k}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{path}: unexpected member `{k}`"))
                }
                None if props.is_some()
                    && s.get("additionalProperties") != Some(&Value::Bool(true)) =>
                {
                    return Err(format!("{path}: undocumented member `{k}`"))
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (v, s.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, item_schema, item, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddms_core::{EntityTypePatch, NewEntityType, NewRelation, NewRelationType, Query};

    #[test]
    fn every_route_is_documented_with_its_role() {
        let doc = document(false);
        for route in ROUTES {
            let op = &doc["paths"][route.path][route.verb.lower()];
            assert!(op.is_object(), "{} {}", route.verb.upper(), route.path);
            assert_eq!(
                op["x-required-role"].as_str(),
                route.access.role().map(|r| r.as_str())
            );
        }
        // Every $ref resolves.
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(doc["components"]["schemas"].get(&name).is_some(), "{name}");
        }
    }

    /// Every property a request schema documents is accepted by the library's type:
    /// the examples use every property and must deserialise.
    #[test]
    fn request_examples_fit_the_library_types() {
        let doc = document(true);
        let s = &doc["components"]["schemas"];
        let ex = |name: &str| s[name]["example"].clone();
        serde_json::from_value::<NewEntityType>(ex("NewEntityType")).unwrap();
        serde_json::from_value::<EntityTypePatch>(ex("EntityTypePatch")).unwrap();
        serde_json::from_value::<Query>(ex("Query")).unwrap();
        serde_json::from_value::<NewRelationType>(ex("NewRelationType")).unwrap();
        serde_json::from_value::<NewRelation>(ex("NewRelation")).unwrap();
        for name in [
            "NewEntityType",
            "EntityTypePatch",
            "Query",
            "NewRelationType",
            "NewRelation",
            "NewTenant",
            "RecordWrite",
            "FieldSpec",
        ] {
            let props: Vec<&String> = s[name]["properties"].as_object().unwrap().keys().collect();
            let example = s[name]["example"].as_object().unwrap();
            if name != "FieldSpec" {
                for p in &props {
                    assert!(example.contains_key(*p), "{name}.{p} has no example");
                }
            }
            validate(&doc, &r(name), &s[name]["example"]).unwrap();
        }
        // FieldSpec documents exactly the members the library accepts.
        let all_members = json!({"name": "a", "label": "A", "kind": "list", "required": false,
            "unique": false, "indexed": false, "default": null, "min": 1.0, "max": 2.0,
            "min_length": 1, "max_length": 2, "pattern": "x", "values": ["a"], "items": "text"});
        serde_json::from_value::<ddms_core::FieldSpec>(all_members.clone()).unwrap();
        let props = s["FieldSpec"]["properties"].as_object().unwrap();
        assert_eq!(props.len(), all_members.as_object().unwrap().len());
    }

    #[test]
    fn validator_catches_mismatches() {
        let doc = document(true);
        let rec = json!({"id": "33333333-3333-3333-3333-333333333333", "entity_type": "p",
            "data": {"a": 1}, "version": 1, "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z", "created_by": null, "updated_by": "u"});
        validate(&doc, &r("Record"), &rec).unwrap();
        let mut bad = rec.clone();
        bad["version"] = json!("1");
        assert!(validate(&doc, &r("Record"), &bad).is_err());
        let mut bad = rec.clone();
        bad["extra"] = json!(1);
        assert!(validate(&doc, &r("Record"), &bad).is_err());
        validate(&doc, &r("CreatedRecords"), &json!({"items": [rec]})).unwrap();
        validate(
            &doc,
            &r("Filter"),
            &json!({"and": [{"field": "a", "op": "eq", "value": 1}, {"not": {"related": {"type": "x"}}}]}),
        )
        .unwrap();
        assert!(validate(&doc, &r("Filter"), &json!({"field": "a", "op": "like"})).is_err());
    }
}
