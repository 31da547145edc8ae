-- API keys. A key is `sl_<public_id>_<secret>`; only SHA-256(secret) is kept,
-- looked up by `public_id` (the visible part, so a leaked key can be found and
-- revoked) and compared in constant time. `user_id` NULL: an admin key;
-- otherwise the key acts as that user only.
CREATE TABLE api_keys (
    id                     BIGSERIAL   PRIMARY KEY,
    public_id              TEXT        NOT NULL,
    secret_hash            BYTEA       NOT NULL,
    name                   TEXT        NOT NULL,
    user_id                BIGINT,
    rate_limit_per_minute  INTEGER,
    expires_at             TIMESTAMPTZ,
    last_used_at           TIMESTAMPTZ,
    revoked_at             TIMESTAMPTZ,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT api_keys_public_id_key UNIQUE (public_id),
    CONSTRAINT api_keys_secret_hash_len CHECK (octet_length(secret_hash) = 32),
    CONSTRAINT api_keys_rate_limit_positive CHECK (rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0)
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id) WHERE user_id IS NOT NULL;
