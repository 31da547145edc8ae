-- Tags on links (issue #16): normalised (lower-case, trimmed, inner spaces
-- collapsed), sorted, without duplicates, at most 20 per link, written by the
-- API. A text[] column rather than a link_tags table: a link's tags come with
-- its row (no join on every read, the streamed lists included), and the GIN
-- index answers `tags @> ARRAY[...]` (links with ALL the given tags) from the
-- index at any table size. The constant default rewrites no rows.
ALTER TABLE urls ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
CREATE INDEX urls_tags_idx ON urls USING gin (tags);
