//! Composio tool-router REST client and connection tracker.
