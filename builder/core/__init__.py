"""Core: context, errors, the one process runner, atomic writes, downloads, OpenPGP, Docker."""
