//! A local stand-in for Composio's tool-router backend.

mod mcp;
