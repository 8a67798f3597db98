-- SQLite's 0017 rebuilds the log and token tables so that each row is
-- written to fewer B-trees. PostgreSQL stores those tables as heaps with
-- one index per key already: nothing to change. The migration exists so
-- that both databases stay at the same migrations (export and import
-- between them require it).
SELECT 1;
