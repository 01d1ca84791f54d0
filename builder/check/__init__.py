"""Stage check: hardening facts per ELF, the build log, lintian; a verdict per target."""
