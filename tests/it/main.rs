//! Integration tests: the `lkcache` binary and library against a real
//! registry (CNCF Distribution) and real tools (skopeo).

mod harness;

mod auth;
mod errors;
mod interop;
mod lifecycle;
mod lock;
mod ls;
mod pull;
mod push;
