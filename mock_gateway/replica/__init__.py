"""One replica of the gateway: the HTTP app, the ledger, the simulated bank, faults and metrics."""
