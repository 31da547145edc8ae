-- Link rules decided by the redirect service on every request (issue #15).
-- All nullable or with a constant default, so adding them rewrites no rows.
--   redirect_type  the status of the redirect (301, 302, 307 or 308)
--   expires_at     from then on the link is expired (410, or fallback_url)
--   max_clicks     after this many redirects the link is exhausted (counted in Valkey)
--   fallback_url   where expired and exhausted links go instead of a 410
--   forward_query  merge the request's query string into the target's
--   rules          ordered [{"when": {...}, "target": "..."}], first match wins
--   password_hash  argon2id PHC string; the password itself is never stored
ALTER TABLE urls
    ADD COLUMN redirect_type smallint NOT NULL DEFAULT 302,
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN max_clicks bigint,
    ADD COLUMN fallback_url text,
    ADD COLUMN forward_query boolean NOT NULL DEFAULT false,
    ADD COLUMN rules jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN password_hash text;

-- NOT VALID, then VALIDATE: checking the existing rows takes no lock that
-- blocks writes.
ALTER TABLE urls
    ADD CONSTRAINT urls_redirect_type_check CHECK (redirect_type IN (301, 302, 307, 308)) NOT VALID,
    ADD CONSTRAINT urls_max_clicks_check CHECK (max_clicks > 0) NOT VALID,
    ADD CONSTRAINT urls_rules_check CHECK (jsonb_typeof(rules) = 'array') NOT VALID;
ALTER TABLE urls VALIDATE CONSTRAINT urls_redirect_type_check;
ALTER TABLE urls VALIDATE CONSTRAINT urls_max_clicks_check;
ALTER TABLE urls VALIDATE CONSTRAINT urls_rules_check;
