"""The audit trail: IHE BALP AuditEvents, a tamper-evident chain, audit queries (issue 5)."""
