-- Single use, enforced by the database: an authorization code yields one
-- token family, and a refresh token one successor. A second exchange or
-- rotation fails on these unique indexes, even when two requests (on two
-- instances) arrive in the same millisecond; NULLs (families from other
-- grants, first tokens of a family) do not collide.
ALTER TABLE token_families ADD COLUMN code_hash TEXT;
CREATE UNIQUE INDEX token_families_code ON token_families(code_hash);
ALTER TABLE refresh_tokens ADD COLUMN parent_hash TEXT;
CREATE UNIQUE INDEX refresh_tokens_parent ON refresh_tokens(parent_hash);
