"""The demo's live view: a pure core that folds events into a state, a Prometheus digest, a scraper, a renderer."""
