-- Links brought over from another shortener (`shortline-api import --from ...`)
-- keep the visit count that tool had exported. It is write-side data about the
-- link's past, shown beside Shortline's own statistics, never folded into them
-- (those are the analytics service's, counted from event rows).
ALTER TABLE urls ADD COLUMN imported_visits BIGINT NOT NULL DEFAULT 0
    CONSTRAINT urls_imported_visits_check CHECK (imported_visits >= 0);
