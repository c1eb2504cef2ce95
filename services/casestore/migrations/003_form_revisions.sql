-- A form's revision changes whenever the form or any of its automations does. Case events carry
-- the revision in force when the case changed, so the dispatcher can cache each form's rules and
-- reload them only when an event is newer than its cache. One sequence for every form: a form
-- deleted and created again under the same id never reuses a revision.
CREATE SEQUENCE form_revisions;

ALTER TABLE forms ADD COLUMN revision bigint NOT NULL DEFAULT nextval('form_revisions');

CREATE FUNCTION form_revision_on_form_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only if the update did not set a revision itself (the automation trigger below does).
    IF NEW.revision = OLD.revision THEN
        NEW.revision := nextval('form_revisions');
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER form_revision BEFORE UPDATE ON forms
    FOR EACH ROW EXECUTE FUNCTION form_revision_on_form_change();

CREATE FUNCTION form_revision_on_automation_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE forms SET revision = nextval('form_revisions')
        WHERE id IN (NEW.form_id, OLD.form_id);
    RETURN NULL;
END $$;

CREATE TRIGGER form_revision AFTER INSERT OR UPDATE OR DELETE ON automations
    FOR EACH ROW EXECUTE FUNCTION form_revision_on_automation_change();
