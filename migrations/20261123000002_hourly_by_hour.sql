-- The "top links" gauge of the analytics service reads the last two hourly buckets of every
-- link; without this index that is a scan of all of link_stats_hourly. Rows are inserted once
-- per link and hour and then only updated in place (redirect_count is not indexed), so the
-- index costs the consumer one entry per new (link, hour), not one per click.
CREATE INDEX link_stats_hourly_hour_idx ON link_stats_hourly (hour, url_id);
