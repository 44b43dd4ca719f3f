// Folds run lifecycle events into the store: the status aggregator.
