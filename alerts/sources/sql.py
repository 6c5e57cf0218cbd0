import psycopg

from alerts.sources.base import Reading, Source, SourceError, as_number


class SqlSource(Source):
    """A read-only query against a PostgreSQL database, bounded by a statement timeout.

    The first column is the value; further columns become labels. The database
    URL is the secret (it holds the password).
    """

    kind = "sql"
    label = "SQL query (PostgreSQL)"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        query = (config.get("query") or "").strip()
        if not query:
            raise ValueError("Set 'query' to a SELECT returning the value first.")
        if not query.lower().startswith(("select", "with")):
            raise ValueError("The query must be a SELECT (or WITH … SELECT).")
        if not secret.startswith(("postgres://", "postgresql://")):
            raise ValueError("Set the secret to a postgresql:// database URL.")
        timeout = config.get("timeout_ms", 5000)
        if not isinstance(timeout, int) or not 100 <= timeout <= 60000:
            raise ValueError("timeout_ms must be a whole number between 100 and 60000.")
        return {**config, "query": query, "timeout_ms": timeout}

    def pull(self) -> list[Reading]:
        timeout = int(self.config.get("timeout_ms", 5000))
        try:
            # Read-only and time-bounded at the server: a slow or writing query cannot hurt.
            with psycopg.connect(
                self.secret,
                connect_timeout=max(1, timeout // 1000),
                options=f"-c statement_timeout={timeout} -c default_transaction_read_only=on",
            ) as conn:
                cursor = conn.execute(self.config["query"])
                names = [c.name for c in cursor.description or []]
                rows = cursor.fetchmany(1000)
        except psycopg.Error as exc:
            # The message can quote the host; never the password (it is not in the text).
            raise SourceError(f"query failed: {str(exc).strip().splitlines()[0]}") from None
        readings = []
        for row in rows:
            if row[0] is None:
                continue
            labels = {names[i]: str(row[i]) for i in range(1, len(row))}
            readings.append((as_number(row[0], names[0] if names else "value"), labels))
        return readings
