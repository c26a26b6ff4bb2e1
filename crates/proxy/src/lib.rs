//! MCP forwarding and the tool-call gate.
