// Runs agents on a host: dispatch consumption, container drivers, logs, summaries, reconcile.
