-- One form of an address that every lookup goes by, computed by the database
-- alone: Unicode NFKC, then lower case. The API finds accounts by it and keys
-- its login counter on what it finds, so an address typed in another case or
-- compatibility form reaches the same account and the same guess budget, and
-- cannot register a second one. Two existing accounts with the same key stop
-- this migration (the unique index), for an operator to merge by hand.
ALTER TABLE core.users
    ADD COLUMN email_key text GENERATED ALWAYS AS (lower(normalize(email, NFKC))) STORED;
CREATE UNIQUE INDEX idx_users_email_key ON core.users (email_key);
DROP INDEX core.idx_users_email;
