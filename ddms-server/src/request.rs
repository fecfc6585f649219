//! Parsed requests: path and query parameters, headers, JSON bodies.
//!
//! Everything here turns client input into typed values or a 4xx [`ApiError`]; nothing
//! here can produce a 500.

use bytes::Bytes;
use ddms_core::{Scope, TenantScope};
use hyper::header::{HeaderName, IF_MATCH};
use hyper::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::app::App;
use crate::error::{body_shape_error, ApiError};
use crate::routes::Route;

/// A request that matched a route and passed authentication.
pub(crate) struct Ctx {
    pub app: App,
    pub headers: HeaderMap,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub scope: Option<Scope>,
    pub body: Bytes,
}

/// Parses a query string, refusing parameters the route does not declare and
/// parameters given twice.
pub(crate) fn parse_query(
    route: &Route,
    raw: Option<&str>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let Some(raw) = raw else { return Ok(out) };
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if k.is_empty() && v.is_empty() {
            continue;
        }
        if !route.query.iter().any(|p| p.name == k) {
            let allowed: Vec<&str> = route.query.iter().map(|p| p.name).collect();
            let name = truncate(&k, 60);
            return Err(ApiError::query_param(
                &name,
                if allowed.is_empty() {
                    format!("unknown query parameter `{name}`: this route takes none")
                } else {
                    format!(
                        "unknown query parameter `{name}`: expected one of {}",
                        allowed.join(", ")
                    )
                },
            ));
        }
        if out.iter().any(|(n, _)| *n == k) {
            return Err(ApiError::query_param(
                &k,
                format!("query parameter `{k}` is given more than once"),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Ctx {
    /// A path parameter (present by construction of the route).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// A path parameter that must be a uuid: 400 `invalid_id` otherwise.
    pub fn id_param(&self, name: &str) -> Result<Uuid, ApiError> {
        let raw = self.param(name);
        Uuid::try_parse(raw).map_err(|_| {
            ApiError::bad_request(
                "invalid_id",
                format!("`{}` is not a valid id (a uuid)", truncate(raw, 60)),
            )
        })
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter that must be a non-negative integer.
    pub fn query_usize(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.query(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                ApiError::query_param(
                    name,
                    format!(
                        "`{name}` must be a non-negative integer, got {:?}",
                        truncate(v, 40)
                    ),
                )
            }),
        }
    }

    /// A query parameter that must be an integer.
    pub fn query_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.query(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::query_param(
                    name,
                    format!("`{name}` must be an integer, got {:?}", truncate(v, 40)),
                )
            }),
        }
    }

    /// A comma-separated list parameter; empty items are dropped, an empty list is 400.
    pub fn query_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.query(name) {
            None => Ok(None),
            Some(v) => {
                let items: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if items.is_empty() {
                    return Err(ApiError::query_param(
                        name,
                        format!("`{name}` must name at least one field"),
                    ));
                }
                Ok(Some(items))
            }
        }
    }

    /// The tenant handle of the authenticated caller.
    pub fn tenant(&self) -> Result<TenantScope, ApiError> {
        match &self.scope {
            Some(s) => Ok(self.app.store().tenant(s.clone())),
            None => Err(ApiError::internal("tenant route without a scope")),
        }
    }

    /// The body as JSON, without a fixed shape (400 `malformed_json` on bad syntax).
    pub fn json_value(&self) -> Result<Value, ApiError> {
        parse_json_value(&self.body)
    }

    /// The body deserialised into `T`: bad syntax is 400 `malformed_json`, a shape that
    /// does not fit (unknown or missing members, wrong types) is 422 `validation_failed`
    /// with the path of the offending member.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let v = self.json_value()?;
        from_value(v)
    }

    /// A single-valued header as text.
    fn header(&self, name: &HeaderName) -> Result<Option<&str>, ApiError> {
        let mut values = self.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(ApiError::header(
                name.as_str(),
                format!("{} must be given at most once", name.as_str()),
            )),
            (Some(v), None) => v.to_str().map(|s| Some(s.trim())).map_err(|_| {
                ApiError::header(
                    name.as_str(),
                    format!("{} is not valid text", name.as_str()),
                )
            }),
        }
    }

    /// The version of `If-Match` (`"3"`, `3`, `W/"3"`; `*` means any version).
    pub fn if_match(&self) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.header(&IF_MATCH)? else {
            return Ok(None);
        };
        if v == "*" {
            return Ok(None);
        }
        let v = v.strip_prefix("W/").unwrap_or(v);
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(v);
        v.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::header("if-match", "If-Match must be a record version, e.g. \"3\"")
            })
    }

    /// `Last-Event-ID`, a non-negative event sequence number.
    pub fn last_event_id(&self) -> Result<Option<i64>, ApiError> {
        let name = HeaderName::from_static("last-event-id");
        let Some(v) = self.header(&name)? else {
            return Ok(None);
        };
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::header(
                    "last-event-id",
                    "Last-Event-ID must be an event sequence number",
                )
            })
    }
}

/// Parses JSON text: bad syntax is 400 `malformed_json`.
pub(crate) fn parse_json_value(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed_json(
            "request body is empty: expected a JSON object",
        ));
    }
    serde_json::from_slice::<Value>(body)
        .map_err(|e| ApiError::malformed_json(format!("request body is not valid JSON: {e}")))
}

/// Deserialises a JSON object into `T`, reporting the path of a misfit (422). Every
/// request body of the API is an object (serde would otherwise accept arrays for
/// structs).
pub(crate) fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    if !v.is_object() {
        return Err(ddms_core::Error::invalid(
            "body",
            "not_an_object",
            "request body must be a JSON object",
        )
        .into());
    }
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        body_shape_error(&path, e.inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ROUTES;

    fn route(path: &str) -> &'static Route {
        ROUTES.iter().find(|r| r.path == path).unwrap()
    }

    #[test]
    fn query_strings() {
        let r = route("/api/v1/events");
        assert_eq!(
            parse_query(r, Some("after=3&limit=10")).unwrap(),
            vec![("after".into(), "3".into()), ("limit".into(), "10".into())]
        );
        assert_eq!(parse_query(r, Some("")).unwrap(), vec![]);
        assert_eq!(parse_query(r, Some("&")).unwrap(), vec![]);
        let e = parse_query(r, Some("after=1&after=2")).unwrap_err();
        assert_eq!(e.code, "invalid_query_parameter");
        let e = parse_query(r, Some("bogus=1")).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let r = route("/api/v1/entity-types/{name}/records");
        let q = parse_query(r, Some("filter=%7B%22a%22%3A1%7D&sort=-created_at")).unwrap();
        assert_eq!(q[0].1, r#"{"a":1}"#);
    }

    #[test]
    fn json_errors_are_classified() {
        assert_eq!(parse_json_value(b"").unwrap_err().code, "malformed_json");
        assert_eq!(parse_json_value(b"{").unwrap_err().code, "malformed_json");
        assert_eq!(
            parse_json_value(b"{} x").unwrap_err().code,
            "malformed_json"
        );
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: Vec<i64>,
        }
        let e = from_value::<T>(serde_json::json!({"a": [1, "x"]})).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.details[0].field, "a[1]");
        let e = from_value::<T>(serde_json::json!({"a": [], "b": 1})).unwrap_err();
        assert_eq!(e.details[0].code, "unknown_field");
        assert_eq!(e.details[0].field, "b");
        let e = from_value::<T>(serde_json::json!({})).unwrap_err();
        assert_eq!(e.details[0].code, "required");
        assert_eq!(e.details[0].field, "a");
        let e = from_value::<T>(serde_json::json!([1])).unwrap_err();
        assert_eq!(e.details[0].field, "body");
    }
}
