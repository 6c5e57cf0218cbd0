"""Metric source: a read-only SQL query against PostgreSQL."""

import psycopg

from alerts.sources.base import Reading, Source, SourceError, as_number, bounded_labels
from opsconsole import outbound

# What the connecting role could do beyond reading tables, itself or through any role
# it may SET ROLE to (MEMBER counts memberships without INHERIT too); any is refused.
POWERS = """
SELECT current_user, array_remove(ARRAY[
    CASE WHEN bool_or(r.rolsuper) THEN 'a superuser (or may become one)' END,
    CASE WHEN pg_has_role(current_user, 'pg_read_server_files', 'MEMBER')
         THEN 'a member of pg_read_server_files' END,
    CASE WHEN pg_has_role(current_user, 'pg_write_server_files', 'MEMBER')
         THEN 'a member of pg_write_server_files' END,
    CASE WHEN pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER')
         THEN 'a member of pg_execute_server_program' END
], NULL)
FROM pg_roles r WHERE pg_has_role(current_user, r.oid, 'MEMBER')
"""


class SqlSource(Source):
    """One read-only query against a PostgreSQL database, bounded by a statement timeout.

    The first column is the value; further columns become labels (size-bounded).
    The database URL is the secret (it holds the password); its role must not be
    a superuser nor able to read or write the server's files or run programs.
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
            params = outbound.pinned_conninfo(
                self.secret,
                connect_timeout=max(1, timeout // 1000),
                options=f"-c statement_timeout={timeout} -c default_transaction_read_only=on",
            )
            with psycopg.connect(**params) as conn:
                # Three locks: a READ ONLY transaction; one statement only (a prepared
                # statement is sent over the extended protocol, which refuses "a; b");
                # and no role that may read or write the server's files or run programs.
                conn.read_only = True
                self._refuse_powerful_roles(conn)
                cursor = conn.execute(self.config["query"], prepare=True)
                names = [c.name for c in cursor.description or []]
                rows = cursor.fetchmany(1000)
        except outbound.OutboundRefused as exc:
            raise SourceError(f"refused: {exc}") from None
        except psycopg.Error as exc:
            # The message can quote the host; never the password (it is not in the text).
            raise SourceError(f"query failed: {str(exc).strip().splitlines()[0]}") from None
        readings = []
        for row in rows:
            if row[0] is None:
                continue
            labels = bounded_labels({names[i]: row[i] for i in range(1, len(row))})
            readings.append((as_number(row[0], names[0] if names else "value"), labels))
        return readings

    @staticmethod
    def _refuse_powerful_roles(conn: psycopg.Connection) -> None:
        role, powers = conn.execute(POWERS, prepare=True).fetchone()
        if powers:
            raise SourceError(
                f"refused: the role {role!r} is {' and '.join(powers)}. Connect as a role "
                "that can only read the tables the query needs."
            )
