-- The incoming request's correlation id, so every attempt casestore hands out (and the case
-- update its answer causes) stays traced to it. Deliveries from before have none: theirs get a
-- new one, as before.
ALTER TABLE deliveries ADD COLUMN correlation_id text;
