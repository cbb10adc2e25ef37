"""The notifier service's own database: its tables, including its outbox and inbox."""

from sqlalchemy import MetaData

from shared.outbox import messaging_tables

metadata = MetaData()
messaging = messaging_tables(metadata)
