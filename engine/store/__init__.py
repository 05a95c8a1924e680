"""Storage at the bottom: the tables, the database (SQLite now, PostgreSQL later), durable file
operations, and the layout of a home folder with its engine lock."""
