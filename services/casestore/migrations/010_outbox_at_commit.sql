-- Events casestore publishes itself as their transaction commits (services/casestore/outbox.py,
-- AtCommit): the relay leaves such a row alone until `relay_after`, and takes it only if that
-- publish never happened (a crash, a broker outage). Every other row is the relay's at once.
ALTER TABLE outbox ADD COLUMN relay_after timestamptz NOT NULL DEFAULT now();

-- The relay is woken only for rows it is to take now.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM added WHERE relay_after <= now()) THEN
        PERFORM pg_notify('casewire_outbox', '');
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
