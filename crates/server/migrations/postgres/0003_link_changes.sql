-- Every instance keeps the links it served in memory (the link cache). A change to a link, by
-- any instance or from outside botlink, is announced on the channel `botlink_links` when it
-- commits, with the link's code and slug (separated by a space), so that every instance
-- listening forgets its copy at once. The use counter of a capped link (clicks_used) changes on
-- every click and is not announced: no cached copy holds it.
CREATE FUNCTION botlink_link_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND (to_jsonb(OLD) - 'clicks_used') = (to_jsonb(NEW) - 'clicks_used') THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('botlink_links', concat_ws(' ', OLD.code, OLD.slug));
    IF TG_OP = 'UPDATE' AND NEW.slug IS DISTINCT FROM OLD.slug THEN
        PERFORM pg_notify('botlink_links', concat_ws(' ', NEW.code, NEW.slug));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER links_changed AFTER UPDATE OR DELETE ON links
    FOR EACH ROW EXECUTE FUNCTION botlink_link_changed();
