"""Stage bootstrap: archive keyrings, sbuild chroot tarballs and Docker base images."""
