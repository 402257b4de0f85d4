"""Store tests: every case on SQLite and on MariaDB."""
