"""The database behind the pipeline: SQLite by default, MySQL/MariaDB by URL."""
