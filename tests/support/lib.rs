//! Helpers for the end-to-end tests: locating the built binary and the installed third-party peers.
