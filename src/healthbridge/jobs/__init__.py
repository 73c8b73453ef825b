"""Background work that outlives a request: job runners (``$reindex``) and their registries."""
