//! Integration tests of toolgate-session against the sandbox over real HTTP on 127.0.0.1.
//! One test binary (shared helpers in `support`).

mod client;
mod lifecycle;
mod secrets;
mod support;
mod tracker;
