//! End-to-end tests of the built binary.

mod http_serve;
