"""Storage: tables, migrations, the database handle and the queries, for SQLite and PostgreSQL."""
