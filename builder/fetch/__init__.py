"""Stage fetch: upstream tarballs and Debian packaging, verified before they are cached."""
