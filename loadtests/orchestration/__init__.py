"""surge's own process: the embedded cluster, the Locust subprocess, the fault player, capacity search and
the collection of a run into its folder. Never imports the generator (it runs in another process)."""
