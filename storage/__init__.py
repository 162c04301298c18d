"""The queue's persistent state: SQLite tables for jobs, attempts and videos, and the operations on them.

Torch-free, and ORM-free: everything speaks SQL through the sqlite3 module, with the tables defined once, by
the migrations in `storage.schema`, and the job states named once, in `storage.states`.
"""
