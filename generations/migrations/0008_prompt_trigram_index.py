"""A pg_trgm GIN index for the gallery's prompt search (PostgreSQL only).

The gallery searches with ``prompt__icontains``, which Django writes as
``UPPER(prompt::text) LIKE UPPER('%word%')``; a GIN index on ``UPPER(prompt)`` with
``gin_trgm_ops`` serves exactly that expression (a word of three or more characters), so a
rare word no longer scans the whole table.

Fallback: ``CREATE EXTENSION pg_trgm`` needs a role that may create it (superuser, the
database owner on PostgreSQL 13+ where pg_trgm is a trusted extension, or an administrator who
created it beforehand). When it cannot be created the migration logs why and creates no index:
the search stays correct, only slower (a sequential scan, linear in the table). Create the
extension later as an administrator and run ``manage.py migrate generations 0007`` then
``migrate`` again to add the index. On SQLite this migration does nothing.
"""

import logging

from django.db import DatabaseError, migrations, transaction

log = logging.getLogger(__name__)

INDEX = "generations_prompt_trgm"


def create_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        try:
            with transaction.atomic(using=connection.alias):  # a savepoint: a refusal leaves the migration usable
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:
            log.warning("pg_trgm unavailable (%s): no trigram index; the prompt search scans the table", exc)
            return
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON generations_generation USING gin (UPPER(prompt) gin_trgm_ops)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")  # the extension stays: others may use it


class Migration(migrations.Migration):
    dependencies = [("generations", "0007_idempotency_fingerprint")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
