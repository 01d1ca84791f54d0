"""Stage image: the Postfix container images and the proofs run against them."""
