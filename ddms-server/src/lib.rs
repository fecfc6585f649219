//! # ddms-server
//!
//! The HTTP API of DDMS on hyper 1.x + tokio, its auth and configuration, and the
//! `ddms` CLI. The server is thin: handlers parse, call the library (on the blocking
//! pool: Diesel is synchronous) and map results; [`error`] is the one place where
//! errors become statuses; [`routes::ROUTES`] is the one table both the router and
//! `/openapi.json` are generated from.
//!
//! Mounting DDMS in another hyper service: build an [`App`] from a
//! [`ddms_core::Store`] and call [`App::handle`] for the requests you do not answer
//! yourself (see `examples/hosting.rs`). Any request body type works:
//!
//! ```
//! use ddms_core::{memory::MemoryBackend, Store};
//! use ddms_server::bytes::Bytes;
//! use ddms_server::http_body_util::{BodyExt, Full};
//! use ddms_server::hyper::Request;
//! use ddms_server::{App, Config};
//!
//! // Development defaults: mock auth, acting for MOCK_TENANT_ID as an admin.
//! let app = App::new(Store::new(MemoryBackend::new()), &Config::default());
//! app.ensure_mock_tenant().unwrap();
//! let rt = ddms_server::tokio::runtime::Runtime::new().unwrap();
//! let resp = rt.block_on(app.handle(
//!     Request::post("/api/v1/entity-types")
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from(r#"{"name":"project","fields":[{"name":"title","kind":"text"}]}"#)))
//!         .unwrap(),
//! ));
//! assert_eq!(resp.status(), 201);
//! let resp = rt.block_on(app.handle(
//!     Request::get("/api/v1/entity-types/nope").body(Full::new(Bytes::new())).unwrap(),
//! ));
//! assert_eq!(resp.status(), 404);
//! let body = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
//! assert!(body.starts_with(br#"{"error":{"code":"not_found""#));
//! ```
//!
//! Or serve it alone with [`serve`].
#![warn(missing_docs)]
#![recursion_limit = "512"]

mod app;
pub mod auth;
pub mod config;
pub mod database;
pub mod error;
mod handlers;
pub use handlers::mark_inline_worker;
pub mod openapi;
mod request;
pub mod response;
pub mod routes;
mod server;
pub mod sse;

pub use app::{App, HealthCheck};
pub use config::{Config, ConfigError};
pub use database::{Database, StartupError};
pub use response::{empty, full, Body};
pub use server::{serve, serve_with, shutdown_signal, ServeOptions};

/// Re-exported so that hosts use the same versions.
pub use {bytes, http_body_util, hyper, hyper_util, tokio};
