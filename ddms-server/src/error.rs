//! The one place where errors become HTTP statuses.
//!
//! Every error body is `{"error":{"code","message","details"?}}`. Library errors map by
//! kind (see [`status_of`]); internal errors are logged with their cause and answered
//! with a generic message.

use std::borrow::Cow;

use ddms_core::{Error, FieldError};
use hyper::header::{HeaderValue, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::response::{json_response, Body};

/// An error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError {
    /// The status to answer with.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: Cow<'static, str>,
    /// Human-readable message (never internal details).
    pub message: String,
    /// Per-field details.
    pub details: Vec<FieldError>,
    /// Rarely used parts, boxed to keep results small.
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
struct Extra {
    /// Extra members of the error object (e.g. `horizon` of an expired cursor).
    members: Map<String, Value>,
    /// `Allow` header (405 only).
    allow: Option<String>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            details: Vec::new(),
            extra: None,
        }
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Adds a member to the error object.
    pub fn with_member(mut self, key: &str, value: Value) -> Self {
        self.extra_mut().members.insert(key.to_string(), value);
        self
    }

    /// Adds per-field details.
    pub fn with_details(mut self, details: Vec<FieldError>) -> Self {
        self.details = details;
        self
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `malformed_json`.
    pub fn malformed_json(message: impl Into<String>) -> Self {
        ApiError::bad_request("malformed_json", message)
    }

    /// 400 `invalid_query_parameter` about `param`.
    pub fn query_param(param: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::bad_request("invalid_query_parameter", message.clone()).with_details(vec![
            FieldError::new(param, "invalid_query_parameter", message),
        ])
    }

    /// 400 `invalid_header` about `header`.
    pub fn header(header: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::bad_request("invalid_header", message.clone())
            .with_details(vec![FieldError::new(header, "invalid_header", message)])
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 `route_not_found`.
    pub fn route_not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no such route; see /openapi.json",
        )
    }

    /// 405 `method_not_allowed`, with the allowed methods.
    pub fn method_not_allowed(allow: String) -> Self {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method not allowed here; allowed: {allow}"),
        );
        e.extra_mut().allow = Some(allow);
        e
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type(got: &str) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "expected content-type application/json, got {:?}",
                truncate(got, 100)
            ),
        )
    }

    /// 503 `timeout`.
    pub fn timeout() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was abandoned; a write it carried may or may not have been applied",
        )
    }

    /// 500 `internal`: logs `cause`, answers with a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut err = Map::new();
        err.insert("code".into(), Value::String(self.code.to_string()));
        err.insert("message".into(), Value::String(self.message.clone()));
        if !self.details.is_empty() {
            err.insert("details".into(), json!(self.details));
        }
        if let Some(extra) = &self.extra {
            for (k, v) in &extra.members {
                err.insert(k.clone(), v.clone());
            }
        }
        json!({ "error": err })
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = json_response(self.status, &self.body());
        let h = resp.headers_mut();
        if let Some(allow) = self.extra.as_ref().and_then(|e| e.allow.as_ref()) {
            if let Ok(v) = HeaderValue::from_str(allow) {
                h.insert(ALLOW, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// The HTTP status of a library error.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::Validation(_)
        | Error::InvalidFilter { .. }
        | Error::InvalidQuery { .. }
        | Error::InvalidCursor(_)
        | Error::CursorExpired { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(&e);
        match &e {
            Error::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "storage unavailable");
                ApiError::new(
                    status,
                    "unavailable",
                    "the database is unavailable; retry later",
                )
            }
            _ if status == StatusCode::INTERNAL_SERVER_ERROR => ApiError::internal(&e),
            Error::InvalidFilter { path, message } | Error::InvalidQuery { path, message } => {
                ApiError::new(status, e.code(), e.to_string()).with_details(vec![FieldError::new(
                    path.clone(),
                    e.code(),
                    message.clone(),
                )])
            }
            Error::CursorExpired { horizon } => ApiError::new(status, e.code(), e.to_string())
                .with_member("horizon", json!(horizon)),
            _ => ApiError::new(status, e.code(), e.to_string()).with_details(e.details().to_vec()),
        }
    }
}

/// A JSON body that deserialised but does not fit the expected shape: 422
/// `validation_failed`, with the path of the offending member.
pub fn body_shape_error(path: &str, e: &serde_json::Error) -> ApiError {
    let path = if path == "." { "" } else { path };
    let msg = strip_position(&e.to_string());
    let (code, member) = if let Some(rest) = msg.strip_prefix("unknown field `") {
        ("unknown_field", rest.split('`').next())
    } else if let Some(rest) = msg.strip_prefix("missing field `") {
        ("required", rest.split('`').next())
    } else {
        ("invalid", None)
    };
    let field = match member {
        Some(m) if !path.ends_with(m) => {
            if path.is_empty() {
                m.to_string()
            } else {
                format!("{path}.{m}")
            }
        }
        _ if path.is_empty() => "body".to_string(),
        _ => path.to_string(),
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("validation failed: {field}: {msg}"),
    )
    .with_details(vec![FieldError::new(field, code, msg)])
}

/// `"... at line 1 column 5"` -> `"..."`.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddms_core::ConflictKind;

    #[test]
    fn library_errors_map_by_kind() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::not_found("record", "x"), 404, "not_found"),
            (
                Error::conflict(ConflictKind::StaleVersion, "stale"),
                409,
                "version_conflict",
            ),
            (
                Error::invalid("a", "required", "m"),
                422,
                "validation_failed",
            ),
            (Error::filter("$", "bad"), 422, "invalid_filter"),
            (Error::query("limit", "bad"), 422, "invalid_query"),
            (Error::InvalidCursor("x".into()), 422, "invalid_cursor"),
            (Error::CursorExpired { horizon: 5 }, 422, "cursor_expired"),
            (Error::Forbidden("no".into()), 403, "forbidden"),
            (Error::Unavailable("down".into()), 503, "unavailable"),
            (Error::Internal("secret detail".into()), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status);
            assert_eq!(a.code, code);
            let body = a.body().to_string();
            assert!(!body.contains("secret detail"), "{body}");
            assert!(!body.contains("down"), "{body}");
        }
    }

    #[test]
    fn filter_errors_carry_their_path() {
        let a = ApiError::from(Error::filter("$.and[0].op", "unknown operator"));
        assert_eq!(a.body()["error"]["details"][0]["field"], "$.and[0].op");
        let a = ApiError::from(Error::CursorExpired { horizon: 42 });
        assert_eq!(a.body()["error"]["horizon"], 42);
    }

    #[test]
    fn positions_are_stripped() {
        assert_eq!(
            strip_position("unknown field `x`, expected `a` at line 1 column 5"),
            "unknown field `x`, expected `a`"
        );
    }
}
