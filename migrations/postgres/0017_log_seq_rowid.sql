-- SQLite's 0017 rebuilds the connection log so that its seq is the rowid
-- and each record is written to one B-tree fewer. PostgreSQL has no rowid:
-- nothing to change. This one exists so that both databases stay at the
-- same migrations, which export and import between them require.
SELECT 1;
