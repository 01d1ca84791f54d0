"""Pipeline: the release graph of keyed actions, its executor, manifest and queries."""
