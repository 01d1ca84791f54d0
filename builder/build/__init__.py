"""Stage build: sbuild in unshare mode (stage, sbuild, depschroot, stagedir), and the
reproducibility check that builds twice (reproducible, variation, buildlog, compare, record)."""
