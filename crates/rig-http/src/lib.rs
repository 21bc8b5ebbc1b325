//! Small HTTP/1.1 helpers over hyper 1, shared by every server and client in the rig.
//!
//! Every server in the workspace takes an already-bound [`tokio::net::TcpListener`] and a
//! shutdown future, so tests bind `127.0.0.1:0` and production binds what the user asked.
//!
//! # Layout
//! - [`server`]: [`serve`] a bound listener with graceful shutdown; a handler may answer
//!   or [`DropConnection`] (to simulate a lost response).
//! - [`reply`]: JSON replies and problem bodies that name the offending field.
//! - [`body`]: bounded request-body reads and query-string parsing.
//! - [`client`]: a keep-alive client with per-request timeouts whose errors say whether
//!   the request could have reached the peer ([`ClientError::is_ambiguous`]).

pub mod body;
pub mod client;
pub mod reply;
pub mod server;

pub use body::{BodyError, percent_decode, query_param, read_body};
pub use client::{ClientError, ClientResponse, HttpClient};
pub use reply::{Reply, json, problem, text, with_retry_after};
pub use server::{DropConnection, PeerAddr, serve};

/// The response body type used by every server in the rig.
pub type Body = http_body_util::Full<bytes::Bytes>;

pub use hyper::body::Incoming;
pub use hyper::{Method, Request, Response, StatusCode, Uri, header};
