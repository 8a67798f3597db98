-- Parked authorization requests (before sign-in) are counted per source
-- (an IPv4 address or an IPv6 /64) so that anonymous traffic cannot grow
-- the table without bound. Rows parked before this migration have none and
-- expire within 30 minutes.
ALTER TABLE auth_requests ADD COLUMN source TEXT;
CREATE INDEX auth_requests_source ON auth_requests(source, created_at);
