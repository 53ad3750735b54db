//! Integration tests: the `lkcache` binary and library against a real
//! registry (CNCF Distribution) and real tools (skopeo).

mod harness;

mod auth;
mod errors;
mod export;
mod faults;
mod import;
mod interop;
mod lifecycle;
mod lock;
mod ls;
mod mirrors;
mod proxy;
mod pull;
mod push;
mod tls;
mod torture;
