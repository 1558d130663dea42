"""The cluster: the router, replica health, the supervisor of the replica processes, events, the admin API."""
