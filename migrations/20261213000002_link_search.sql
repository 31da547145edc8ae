-- Search and sort of GET /urls (issue #16).
-- `q` is a case-insensitive substring match (ILIKE '%term%') over title,
-- original_url and short_code: one trigram GIN index per column, which the
-- planner combines (BitmapOr) for the OR of the three. pg_trgm ships with
-- PostgreSQL's contrib and is a trusted extension (the database owner may
-- create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX urls_title_trgm_idx ON urls USING gin (title gin_trgm_ops);
CREATE INDEX urls_original_url_trgm_idx ON urls USING gin (original_url gin_trgm_ops);
CREATE INDEX urls_short_code_trgm_idx ON urls USING gin (short_code gin_trgm_ops);
-- sort=created_at / -created_at (ties by id): read in index order.
CREATE INDEX urls_created_at_idx ON urls (created_at, id);
