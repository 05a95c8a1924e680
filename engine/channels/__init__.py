"""How sealed messages travel: email (SMTP out, IMAP in); the file and local channels follow."""
