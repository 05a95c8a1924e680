"""OpenPGP: the installation's key ring, the codecs that seal and open messages, the handshake."""
