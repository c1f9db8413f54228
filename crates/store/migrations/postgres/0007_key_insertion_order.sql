-- Keys are listed newest first; keys made in the same second (a rotation's new key and the
-- old one) keep the order they were inserted in. SQLite has that order in its rowid; here a
-- sequence gives it (existing rows are numbered in the order they are read).
ALTER TABLE virtual_keys ADD COLUMN inserted_seq BIGSERIAL;
