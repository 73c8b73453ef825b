"""Who may see and change what: SMART scopes, and (as it lands) the access-controlled repository
wrapper, consent decisions and rate limits (ARCHITECTURE.md, security/)."""
