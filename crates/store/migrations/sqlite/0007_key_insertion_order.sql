-- Keys are listed newest first; keys made in the same second (a rotation's new key and the
-- old one) keep the order they were inserted in. SQLite already has that order in each row's
-- rowid, so nothing changes here (PostgreSQL's 0007 adds a sequence for it). The version
-- exists so that both backends know the same schema versions.
SELECT 1;
