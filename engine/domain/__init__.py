"""The vocabulary every room shares: the message envelope and bundles, the message folders."""
