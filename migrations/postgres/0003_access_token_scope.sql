-- The scope of each access token: a refresh may narrow it below the grant's
-- (RFC 6749 §6). NULL: the family's scope.
ALTER TABLE access_tokens ADD COLUMN scope TEXT;
