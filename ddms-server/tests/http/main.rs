//! The HTTP API over real HTTP against real PostgreSQL (one test binary, to save link
//! time): happy paths, roles, JWT, tenant isolation, bad input, SSE, shutdown and
//! database outages. Every response any test receives is checked against
//! `/openapi.json` (documented status, schema-valid body) and must not be a 500.

mod support;

mod bad_input;
mod happy;
mod jwt;
mod lifecycle;
mod roles;
mod sse;
mod tenancy;
