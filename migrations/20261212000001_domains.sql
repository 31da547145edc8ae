-- Custom domains (issue #16): a link belongs to one domain, and its short code
-- is unique within that domain. domain_id NULL is the default domain (the host
-- of PUBLIC_BASE_URL, and whatever host reaches the service by address); the
-- same code may then exist once on the default domain and once per custom one.
CREATE TABLE domains (
    id         BIGSERIAL PRIMARY KEY,
    -- Lower-case, IDNs in punycode, no port: compared as the redirect
    -- service normalises a request's Host.
    host       TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- RESTRICT: a domain with links cannot be deleted (the API answers 409).
ALTER TABLE urls ADD COLUMN domain_id BIGINT REFERENCES domains (id) ON DELETE RESTRICT;

-- One code per domain. COALESCE folds the default domain (NULL) into one
-- value, so two links without a domain still collide; lookups of the
-- default domain use the same expression to use this index.
CREATE UNIQUE INDEX urls_domain_code_key ON urls ((COALESCE(domain_id, 0)), short_code);
ALTER TABLE urls DROP CONSTRAINT urls_short_code_key;
CREATE INDEX urls_domain_id_idx ON urls (domain_id) WHERE domain_id IS NOT NULL;
