"""The email channel's parts: account settings and errors, SMTP sending, IMAP receiving."""
