"""Stage source: Debian's packaging plus our overlays, one .dsc per target."""
