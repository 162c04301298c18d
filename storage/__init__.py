"""The queue's persistent state: SQLite tables for jobs, attempts and videos, and the operations on them.

Torch-free. The hot paths (`flf2v ls`, submit, claim) use the sqlite3 module directly; `storage.models`
offers sqlmodel classes of the same tables for ORM readers.
"""
