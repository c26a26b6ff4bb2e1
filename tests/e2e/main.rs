//! End-to-end tests of the built binary.

mod abuse;
mod binary_browser;
mod binary_cli;
mod binary_flow;
mod binary_stdio;
mod composio_lifecycle;
mod config_layers;
mod connect_terminal;
mod cors;
mod deploy_container;
mod deploy_static;
mod docs;
mod docs_grafana;
mod http_serve;
mod multiuser;
mod oauth;
mod parity;
mod parity_body_cap;
mod sandbox;
mod stdio_abuse;
mod stdio_lifecycle;
mod stdio_peers;
