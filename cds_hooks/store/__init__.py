"""Storage: SQLAlchemy engines (SQLite by default, PostgreSQL), Alembic migrations, and the repository of
issued cards, feedback, used JWT ids, override memory and basis pages (sealed). Stores no patient identifiers.

May import `pathway` (the issued-card type), `protocol`, `settings` and `telemetry`.
"""
