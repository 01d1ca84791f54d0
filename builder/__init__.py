"""pfbuild: hardened Postfix packages, apt repository and images from an upstream release."""

__version__ = "0.1.0"
