//! Who is asking: mock auth for development, HS256 JWTs otherwise.
//!
//! Either way the result is a [`ddms_core::Scope`] (tenant, actor, strongest role); the
//! library confines every data access to it.
//!
//! - **Mock** (`MOCK_AUTH=true`, the development default): the tenant is the
//!   `x-tenant-id` header, or `MOCK_TENANT_ID` without it; the actor is `MOCK_USER_ID`
//!   and the role the strongest of `MOCK_ROLES`. `Authorization` is ignored.
//! - **JWT** (`MOCK_AUTH=false`): `Authorization: Bearer <token>`, HS256 with
//!   `JWT_SECRET`, `exp` required and checked (`nbf` too when present). Claims: `tenant_id`
//!   (or `tenant`), a uuid; `sub`, the actor; `roles`, an array or a comma-separated
//!   string of `admin`, `editor`, `viewer` (unknown roles are ignored, the strongest known
//!   one counts). Any failure is 401 `unauthorized`. `x-tenant-id` is ignored.

use ddms_core::{Role, Scope, TenantId};
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use uuid::Uuid;

use crate::config::Config;
use crate::error::ApiError;

/// The header naming the tenant in mock mode.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// Longest actor (`sub`) accepted.
const MAX_SUBJECT_LEN: usize = 256;

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// Development mode: trust `x-tenant-id`, fixed actor and role.
    Mock {
        /// Tenant used when the header is absent.
        default_tenant: TenantId,
        /// Actor of every request.
        actor: String,
        /// Role of every request.
        role: Role,
    },
    /// HS256 bearer tokens.
    Jwt(Box<JwtAuth>),
}

/// JWT verification settings.
#[derive(Clone)]
pub struct JwtAuth {
    /// The verification key.
    pub key: DecodingKey,
    /// What is checked besides the signature.
    pub validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Mock {
                default_tenant,
                actor,
                role,
            } => f
                .debug_struct("Mock")
                .field("default_tenant", default_tenant)
                .field("actor", actor)
                .field("role", role)
                .finish(),
            Auth::Jwt(_) => f.write_str("Jwt(HS256)"),
        }
    }
}

impl Auth {
    /// The auth mode of `config`.
    pub fn from_config(config: &Config) -> Auth {
        if config.mock_auth {
            Auth::Mock {
                default_tenant: config.mock_tenant_id,
                actor: config.mock_user_id.clone(),
                role: config.mock_role,
            }
        } else {
            Auth::jwt(config.jwt_secret.as_bytes())
        }
    }

    /// JWT mode with `secret`.
    pub fn jwt(secret: &[u8]) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // No audience is configured: do not reject tokens that carry one.
        validation.validate_aud = false;
        validation.leeway = 30;
        Auth::Jwt(Box::new(JwtAuth {
            key: DecodingKey::from_secret(secret),
            validation,
        }))
    }

    /// True in mock mode.
    pub fn is_mock(&self) -> bool {
        matches!(self, Auth::Mock { .. })
    }

    /// Authenticates a request from its headers.
    ///
    /// # Errors
    ///
    /// 401 `unauthorized` for a missing or bad token (JWT mode); 400 `invalid_header`
    /// for an `x-tenant-id` that is not a uuid (mock mode).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Scope, ApiError> {
        match self {
            Auth::Mock {
                default_tenant,
                actor,
                role,
            } => {
                let mut values = headers.get_all(TENANT_HEADER).iter();
                let tenant = match (values.next(), values.next()) {
                    (None, _) => *default_tenant,
                    (Some(_), Some(_)) => {
                        return Err(ApiError::header(
                            TENANT_HEADER,
                            "x-tenant-id must be given at most once",
                        ))
                    }
                    (Some(v), None) => v
                        .to_str()
                        .ok()
                        .and_then(|s| Uuid::try_parse(s.trim()).ok())
                        .map(TenantId)
                        .ok_or_else(|| {
                            ApiError::header(TENANT_HEADER, "x-tenant-id must be a uuid")
                        })?,
                };
                Ok(Scope::new(tenant, actor.clone(), *role))
            }
            Auth::Jwt(jwt) => {
                let token = bearer_token(headers)?;
                let data = jsonwebtoken::decode::<Value>(token, &jwt.key, &jwt.validation)
                    .map_err(|e| {
                        ApiError::unauthorized(match e.kind() {
                            ErrorKind::ExpiredSignature => "token has expired",
                            ErrorKind::ImmatureSignature => "token is not valid yet",
                            ErrorKind::InvalidSignature => "token signature is invalid",
                            ErrorKind::InvalidAlgorithm => "token must be signed with HS256",
                            ErrorKind::MissingRequiredClaim(_) => "token has no exp claim",
                            _ => "token is malformed",
                        })
                    })?;
                scope_from_claims(&data.claims)
            }
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(ApiError::unauthorized("missing bearer token")),
        (Some(_), Some(_)) => {
            return Err(ApiError::unauthorized(
                "authorization must be given at most once",
            ))
        }
        (Some(v), None) => v,
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("authorization header is not valid text"))?
        .trim();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "expected `Authorization: Bearer <token>`",
        )),
    }
}

/// The scope described by verified claims.
fn scope_from_claims(claims: &Value) -> Result<Scope, ApiError> {
    let tenant = claims
        .get("tenant_id")
        .or_else(|| claims.get("tenant"))
        .and_then(Value::as_str)
        .and_then(|s| Uuid::try_parse(s.trim()).ok())
        .map(TenantId)
        .ok_or_else(|| ApiError::unauthorized("token has no valid tenant_id claim (a uuid)"))?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_LEN && !s.contains('\0'))
        .ok_or_else(|| ApiError::unauthorized("token has no valid sub claim"))?;
    let role = match claims.get("roles") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(Role::parse)
            .max(),
        Some(Value::String(s)) => s.split(',').filter_map(Role::parse).max(),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::unauthorized("token has no roles claim naming admin, editor or viewer")
    })?;
    Ok(Scope::new(tenant, sub, role))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_give_the_strongest_role() {
        let t = "33333333-3333-3333-3333-333333333333";
        let s = scope_from_claims(
            &json!({"tenant_id": t, "sub": "u", "roles": ["viewer", "editor", "x"]}),
        )
        .unwrap();
        assert_eq!(s.role, Role::Editor);
        let s =
            scope_from_claims(&json!({"tenant": t, "sub": "u", "roles": "viewer, admin"})).unwrap();
        assert_eq!(s.role, Role::Admin);
        assert_eq!(s.tenant.to_string(), t);
        assert_eq!(s.actor, "u");
    }

    #[test]
    fn missing_or_bad_claims_are_unauthorized() {
        let t = "33333333-3333-3333-3333-333333333333";
        for claims in [
            json!({"sub": "u", "roles": ["admin"]}),
            json!({"tenant_id": "nope", "sub": "u", "roles": ["admin"]}),
            json!({"tenant_id": 5, "sub": "u", "roles": ["admin"]}),
            json!({"tenant_id": t, "roles": ["admin"]}),
            json!({"tenant_id": t, "sub": "", "roles": ["admin"]}),
            json!({"tenant_id": t, "sub": "u"}),
            json!({"tenant_id": t, "sub": "u", "roles": ["root"]}),
            json!({"tenant_id": t, "sub": "u", "roles": 3}),
        ] {
            let e = scope_from_claims(&claims).unwrap_err();
            assert_eq!(e.status.as_u16(), 401, "{claims}");
            assert_eq!(e.code, "unauthorized");
        }
    }

    #[test]
    fn mock_mode_reads_the_tenant_header() {
        let auth = Auth::from_config(&Config::default());
        let mut h = HeaderMap::new();
        let s = auth.authenticate(&h).unwrap();
        assert_eq!(s.tenant.to_string(), crate::config::DEFAULT_MOCK_TENANT_ID);
        assert_eq!(s.role, Role::Admin);
        h.insert(
            TENANT_HEADER,
            "44444444-4444-4444-4444-444444444444".parse().unwrap(),
        );
        assert_eq!(
            auth.authenticate(&h).unwrap().tenant.to_string(),
            "44444444-4444-4444-4444-444444444444"
        );
        h.insert(TENANT_HEADER, "nope".parse().unwrap());
        assert_eq!(auth.authenticate(&h).unwrap_err().status.as_u16(), 400);
    }
}
