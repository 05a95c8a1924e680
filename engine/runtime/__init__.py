"""Running it: the threaded engine over one installation, and the embedded demo."""
